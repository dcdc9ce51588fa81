# Meta's limits on what a free-form interactive or location message carries
# (FACTS.md §1): reply buttons 1 to 3, titles and ids capped and unique; a list
# with at most 10 sections and 10 rows in all; the lengths of headers, bodies,
# footers, labels, rows and the cta_url display text; coordinates in range.
# Meta refuses such a message with 131009 ("Parameter value is not valid", e.g.
# "Button title length invalid. Min length: 1, Max length: 20" or "Total row
# count exceed max allowed count: 10"); RULE_CODES answers the same.
#
# The gateway gives input.message.interactive and input.message.location
# (docs/input.md): lengths in characters are counted in Python, so a rule here
# is one lookup and one comparison. Every rule requires message.type
# "interactive" or "location" (main.rego consults this package for free-form
# messages only), and tests it first.
package sendgate.payload

# A capped field over its limit. `lengths` is keyed by the field's kind; a kind
# with no limit in data is not checked.
deny contains reason if {
	input.message.type == "interactive"
	lengths := data.sendgate.params.payload.interactive.lengths # once, not per field: ~5 us a field on regorus
	some entry in input.message.interactive.fields
	limit := lengths[entry.kind]
	entry.length > limit
	reason := {
		"rule": "payload.length",
		"message": sprintf(
			"%s is %d characters long; WhatsApp allows at most %d characters in a %s",
			[entry.field, entry.length, limit, kind_label[entry.kind]],
		),
		"field": entry.field,
		"kind": entry.kind,
		"length": entry.length,
		"limit": limit,
	}
}

# Reply buttons: between min and max of them (Meta: 1 to 3).
deny contains reason if {
	input.message.type == "interactive"
	input.message.interactive.type == "button"
	bounds := data.sendgate.params.payload.interactive.reply_buttons
	n := input.message.interactive.button_count
	is_number(n) # tested before the negation: the register VM goes on past an undefined value
	not in_range(n, bounds.min, bounds.max)
	reason := {
		"rule": "payload.buttons",
		"message": sprintf(
			"a reply buttons message has %d buttons; WhatsApp allows %d to %d",
			[n, bounds.min, bounds.max],
		),
		"count": n,
		"min": bounds.min,
		"max": bounds.max,
	}
}

# Reply-button ids are what the webhook reports back, titles what the user
# tells apart: Meta wants both unique within the message.
deny contains reason if {
	input.message.type == "interactive"
	some id in input.message.interactive.duplicate_button_ids
	reason := {
		"rule": "payload.duplicate_button",
		"message": sprintf("reply button id %q is used more than once; each button needs its own id", [id]),
		"id": id,
	}
}

deny contains reason if {
	input.message.type == "interactive"
	some title in input.message.interactive.duplicate_button_titles
	reason := {
		"rule": "payload.duplicate_button",
		"message": sprintf("reply button title %q is used more than once; each button needs its own title", [title]),
		"title": title,
	}
}

# A list message: at most max_sections sections and max_rows rows in all.
deny contains reason if {
	input.message.type == "interactive"
	input.message.interactive.type == "list"
	limit := data.sendgate.params.payload.interactive.list.max_sections
	n := input.message.interactive.section_count
	n > limit
	reason := {
		"rule": "payload.list",
		"message": sprintf("a list message has %d sections; WhatsApp allows at most %d", [n, limit]),
		"sections": n,
		"limit": limit,
	}
}

deny contains reason if {
	input.message.type == "interactive"
	input.message.interactive.type == "list"
	limit := data.sendgate.params.payload.interactive.list.max_rows
	n := input.message.interactive.row_count
	n > limit
	reason := {
		"rule": "payload.list",
		"message": sprintf("a list message has %d rows in all; WhatsApp allows at most %d across its sections", [n, limit]),
		"rows": n,
		"limit": limit,
	}
}

# Coordinates: latitude and longitude within their ranges ([min, max] in data).
deny contains reason if {
	input.message.type == "location"
	some axis in ["latitude", "longitude"]
	value := input.message.location[axis]
	is_number(value) # as above
	[low, high] := data.sendgate.params.payload.location[axis]
	not in_range(value, low, high)
	reason := {
		"rule": "payload.location",
		"message": sprintf("location %s %v is out of range; it must be from %v to %v", [axis, value, low, high]),
		"axis": axis,
		"value": value,
		"min": low,
		"max": high,
	}
}

in_range(n, low, high) if {
	n >= low
	n <= high
}

# How a field kind reads in a reason.
kind_label := {
	"header_text": "header text",
	"body": "body text",
	"footer": "footer",
	"button_title": "reply button title",
	"button_id": "reply button id",
	"list_button": "list button label",
	"section_title": "list section title",
	"row_title": "list row title",
	"row_description": "list row description",
	"row_id": "list row id",
	"cta_display_text": "cta_url display text",
}
