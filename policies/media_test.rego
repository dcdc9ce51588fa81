package sendgate.media_test

import data.sendgate
import data.sendgate.fixtures_test as fx
import data.sendgate.media

# A media message inside the window, by a link whose extension says nothing.
media_input(kind, patch) := fx.text({"message": {
	"type": kind,
	"media": object.union(
		{
			"kind": kind, "id": null, "link": "https://cdn.acme.example/file", "extension": null,
			"known": false, "mime_type": null, "declared_type": null, "size": null, "animated": null,
		},
		patch,
	),
}})

# Uploaded through sendgate: type and size known.
uploaded(kind, mime, size) := media_input(kind, {
	"id": "1480000000000001", "link": null, "known": true,
	"mime_type": mime, "declared_type": mime, "size": size,
})

by_link(kind, extension) := media_input(kind, {"link": sprintf("https://cdn.acme.example/f.%s", [extension]), "extension": extension})

mb := 1048576

test_supported_uploads_within_limits_pass if {
	every inp in [
		uploaded("image", "image/jpeg", 5 * mb),
		uploaded("image", "image/png", 1),
		uploaded("video", "video/mp4", 16 * mb),
		uploaded("video", "video/3gpp", 1),
		uploaded("audio", "audio/ogg", 16 * mb),
		uploaded("audio", "audio/mpeg", 1),
		uploaded("document", "application/pdf", 100 * mb),
		uploaded("document", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", 1),
		uploaded("sticker", "image/webp", 500 * 1024),
	] {
		d := sendgate.decision with input as inp
		d.allow == true
	}
}

test_unknown_media_is_allowed_on_what_is_known if {
	every inp in [
		media_input("image", {}), # a link without an extension
		media_input("image", {"id": "999", "link": null}), # an id sendgate did not see uploaded
		by_link("image", "php"), # an extension data does not list
		media_input("sticker", {"id": "999", "link": null, "size": null}),
	] {
		count(media.deny) == 0 with input as inp
	}
}

test_a_pdf_sent_as_an_image if {
	r := fx.only(media.deny, "media.type") with input as uploaded("image", "application/pdf", 1000)
	r.kind == "image"
	r.mime_types == ["application/pdf"]
	r.allowed == ["image/jpeg", "image/png"]
	r.message == concat("", [
		"media 1480000000000001 was uploaded through sendgate as application/pdf: ",
		"Meta takes image/jpeg, image/png for image messages and fails this one with 131053 (media upload error)",
	])
}

test_unsupported_types_for_each_kind if {
	every inp in [
		uploaded("image", "image/webp", 1), # chatwoot#12260: WebP as an image, 131053
		uploaded("audio", "audio/opus", 1), # chatwoot#12713: audio/opus, 131053
		uploaded("video", "video/quicktime", 1),
		uploaded("document", "application/zip", 1),
		uploaded("sticker", "image/png", 1),
	] {
		fx.ids(media.deny) == {"media.type"} with input as inp
	}
}

test_links_by_extension if {
	r := fx.only(media.deny, "media.type") with input as by_link("image", "gif")
	r.mime_types == ["image/gif"]
	r.message == concat("", [
		"link https://cdn.acme.example/f.gif ends in .gif, which is image/gif: ",
		"Meta takes image/jpeg, image/png for image messages and fails this one with 131053 (media upload error)",
	])
	fx.ids(media.deny) == {"media.type"} with input as by_link("document", "jpg")
	fx.ids(media.deny) == {"media.type"} with input as by_link("sticker", "png")

	# an extension that may be either kind fits if one of its types does
	count(media.deny) == 0 with input as by_link("audio", "mp4")
	count(media.deny) == 0 with input as by_link("video", "mp4")
	count(media.deny) == 0 with input as by_link("audio", "m4a")
	count(media.deny) == 0 with input as by_link("document", "pdf")
	fx.ids(media.deny) == {"media.type"} with input as by_link("audio", "wav")
}

test_the_upload_wins_over_the_link if {
	inp := media_input("image", {
		"id": "1480000000000001", "link": "https://cdn.acme.example/a.pdf", "extension": "pdf",
		"known": true, "mime_type": "image/png", "size": 10,
	})
	count(media.deny) == 0 with input as inp
}

test_sizes_over_metas_limits if {
	r := fx.only(media.deny, "media.size") with input as uploaded("image", "image/jpeg", (5 * mb) + 1)
	r.size == (5 * mb) + 1
	r.max_bytes == 5 * mb
	r.message == "media 1480000000000001 is 5242881 bytes, over Meta's limit of 5242880 bytes for image messages: Meta fails it with 131053 (media upload error)"
	fx.ids(media.deny) == {"media.size"} with input as uploaded("video", "video/mp4", (16 * mb) + 1)
	fx.ids(media.deny) == {"media.size"} with input as uploaded("audio", "audio/aac", (16 * mb) + 1)
	fx.ids(media.deny) == {"media.size"} with input as uploaded("document", "text/plain", (100 * mb) + 1)
}

test_sticker_limits_static_and_animated if {
	still := object.union(uploaded("sticker", "image/webp", 102401), {"message": {"media": {"animated": false}}})
	r := fx.only(media.deny, "media.size") with input as still
	r.max_bytes == 102400
	contains(r.message, "for a static sticker")
	count(media.deny) == 0 with input as object.union(still, {"message": {"media": {"size": 102400}}})

	moving := object.union(still, {"message": {"media": {"animated": true}}})
	count(media.deny) == 0 with input as moving
	over := object.union(moving, {"message": {"media": {"size": 512001}}})
	s := fx.only(media.deny, "media.size") with input as over
	s.max_bytes == 512000
	contains(s.message, "for an animated sticker")

	# not known to be still: the larger limit
	count(media.deny) == 0 with input as uploaded("sticker", "image/webp", 512000)
}

test_both_rules_can_fire if {
	d := sendgate.decision with input as uploaded("image", "application/pdf", 200 * mb)
	fx.ids(d.deny) == {"media.size", "media.type"}
}

test_the_limits_are_metas if {
	p := data.sendgate.params.media
	p.max_bytes == {
		"image": 5 * mb, "video": 16 * mb, "audio": 16 * mb, "document": 100 * mb,
		"sticker": 100 * 1024, "sticker_animated": 500 * 1024,
	}
	every kind, types in p.types {
		kind in {"image", "video", "audio", "document", "sticker"}
		every t in types {
			lower(t) == t
		}
	}
	every _, types in p.extensions {
		every t in types {
			lower(t) == t
		}
	}
}
