# Media messages (image, video, audio, document, sticker) as Meta's Cloud API
# takes them ("Supported media types" in Meta's Media reference; AWS End User
# Messaging's "Supported media file types and sizes in WhatsApp"): the file's
# MIME type must be one Meta supports for the message's type (no PDF sent as an
# image, no WebP as an image), and its size within that type's limit. Meta fails
# such a send with 131053 ("Media upload error"), after it accepted the message.
#
# What the gateway knows of the file (input.message.media, docs/input.md): for
# an id uploaded through sendgate, the upload's type, size and, for a WebP,
# whether it is animated (known == true); for a link, the types its path's
# extension names (params.media.extensions). A rule whose fact is missing does
# not fire: an id sendgate did not see uploaded, or a link without a listed
# extension, is allowed on what is known.
#
# Every rule requires a media message (input.message.type the media's kind:
# image, video...): never a template, a status call or an encrypted send
# (main.rego's branches).
package sendgate.media

# The MIME types the file may be: the upload's, else the ones its link's
# extension names; undefined when neither is known.
candidates := [input.message.media.mime_type] if {
	is_string(input.message.media.mime_type)
} else := types if {
	is_string(input.message.media.extension)
	types := data.sendgate.params.media.extensions[input.message.media.extension]
}

# What the candidates were learnt from, for the reason's message.
source := sprintf("media %v was uploaded through sendgate as", [input.message.media.id]) if {
	is_string(input.message.media.mime_type)
} else := sprintf("link %s ends in .%s, which is", [input.message.media.link, input.message.media.extension])

# The size limit for a kind of media. A sticker's is the static one only when the
# upload is known to be a still WebP: an animated or unknown one gets the larger.
max_bytes(kind, animated) := data.sendgate.params.media.max_bytes.sticker if {
	kind == "sticker"
	animated == false
} else := data.sendgate.params.media.max_bytes.sticker_animated if {
	kind == "sticker"
} else := data.sendgate.params.media.max_bytes[kind]

size_label(kind, animated) := "a static sticker" if {
	kind == "sticker"
	animated == false
} else := "an animated sticker" if {
	kind == "sticker"
} else := sprintf("%s messages", [kind])

deny contains reason if {
	is_array(candidates)
	kind := input.message.media.kind
	input.message.type == kind
	allowed := data.sendgate.params.media.types[kind]
	fitting := [t | some t in candidates; t in allowed]
	count(fitting) == 0
	reason := {
		"rule": "media.type",
		"message": sprintf(
			"%s %s: Meta takes %s for %s messages and fails this one with 131053 (media upload error)",
			[source, concat(" or ", candidates), concat(", ", allowed), kind],
		),
		"kind": kind,
		"mime_types": candidates,
		"allowed": allowed,
	}
}

deny contains reason if {
	size := input.message.media.size
	is_number(size)
	kind := input.message.media.kind
	input.message.type == kind
	animated := object.get(input.message.media, "animated", null)
	limit := max_bytes(kind, animated)
	size > limit
	reason := {
		"rule": "media.size",
		"message": sprintf(
			"media %v is %d bytes, over Meta's limit of %d bytes for %s: Meta fails it with 131053 (media upload error)",
			[input.message.media.id, size, limit, size_label(kind, animated)],
		),
		"kind": kind,
		"size": size,
		"max_bytes": limit,
	}
}
