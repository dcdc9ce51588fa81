package sendgate.payload_test

import data.sendgate.fixtures_test as fx
import data.sendgate.payload

# An interactive message as the gateway describes it (docs/input.md): Meta's own
# "Send Reply Button" example, within every limit.
reply_buttons := {
	"type": "button",
	"fields": [
		{"field": "interactive.body.text", "kind": "body", "length": 16},
		{"field": "interactive.action.buttons[0].reply.title", "kind": "button_title", "length": 7},
		{"field": "interactive.action.buttons[0].reply.id", "kind": "button_id", "length": 19},
		{"field": "interactive.action.buttons[1].reply.title", "kind": "button_title", "length": 10},
		{"field": "interactive.action.buttons[1].reply.id", "kind": "button_id", "length": 22},
	],
	"button_count": 2,
	"duplicate_button_ids": [],
	"duplicate_button_titles": [],
	"section_count": 0,
	"row_count": 0,
}

menu_list := {
	"type": "list",
	"fields": [{"field": "interactive.action.button", "kind": "list_button", "length": 16}],
	"button_count": 0,
	"duplicate_button_ids": [],
	"duplicate_button_titles": [],
	"section_count": 2,
	"row_count": 4,
}

interactive(facts) := fx.text({"message": {"type": "interactive", "interactive_type": facts.type, "interactive": facts}})

field(kind, length) := {"field": concat("", ["interactive.", kind]), "kind": kind, "length": length}

with_fields(facts, fields) := object.union(facts, {"fields": fields})

location(lat, long) := fx.text({"message": {"type": "location", "location": {"latitude": lat, "longitude": long}}})

test_meta_examples_pass if {
	count(payload.deny) == 0 with input as interactive(reply_buttons)
	count(payload.deny) == 0 with input as interactive(menu_list)
	count(payload.deny) == 0 with input as location(37.758056, -122.425332)
}

test_other_messages_pass if {
	count(payload.deny) == 0 with input as fx.text_input
	count(payload.deny) == 0 with input as fx.template_input
}

test_each_length_at_its_limit_passes_and_one_over_fires if {
	lengths := data.sendgate.params.payload.interactive.lengths
	ok := payload.deny with input as interactive(with_fields(reply_buttons, [field(k, n) | some k, n in lengths]))
	over := payload.deny with input as interactive(with_fields(reply_buttons, [field(k, n + 1) | some k, n in lengths]))
	count(ok) == 0
	{[r.kind, r.length, r.limit] | some r in over; r.rule == "payload.length"} == {[k, n + 1, n] | some k, n in lengths}
}

test_length_message_names_field_and_limit if {
	reasons := payload.deny with input as interactive(with_fields(reply_buttons, [{
		"field": "interactive.action.buttons[0].reply.title",
		"kind": "button_title", "length": 25,
	}]))
	r := fx.only(reasons, "payload.length")
	r.message == "interactive.action.buttons[0].reply.title is 25 characters long; WhatsApp allows at most 20 characters in a reply button title"
}

test_meta_limits_are_the_defaults if {
	lengths := data.sendgate.params.payload.interactive.lengths
	lengths.button_title == 20
	lengths.button_id == 256
	lengths.list_button == 20
	lengths.row_title == 24
	lengths.row_description == 72
	lengths.row_id == 200
	lengths.body == 1024
	lengths.header_text == 60
	lengths.footer == 60
	lengths.cta_display_text == 20
}

test_unknown_kind_is_not_checked if {
	reasons := payload.deny with input as interactive(with_fields(reply_buttons, [field("flow_cta", 500)]))
	count(reasons) == 0
}

test_reply_buttons_one_to_three if {
	count(payload.deny) == 0 with input as interactive(object.union(reply_buttons, {"button_count": 1}))
	count(payload.deny) == 0 with input as interactive(object.union(reply_buttons, {"button_count": 3}))
	none := payload.deny with input as interactive(object.union(reply_buttons, {"button_count": 0}))
	four := payload.deny with input as interactive(object.union(reply_buttons, {"button_count": 4}))
	fx.only(none, "payload.buttons").count == 0
	r := fx.only(four, "payload.buttons")
	[r.count, r.min, r.max] == [4, 1, 3]
	r.message == "a reply buttons message has 4 buttons; WhatsApp allows 1 to 3"
}

test_button_count_only_for_reply_buttons if {
	reasons := payload.deny with input as interactive(object.union(menu_list, {"button_count": 0}))
	count(reasons) == 0
}

test_duplicate_button_id_and_title if {
	reasons := payload.deny with input as interactive(object.union(reply_buttons, {
		"duplicate_button_ids": ["yes"],
		"duplicate_button_titles": ["Yes"],
	}))
	{[r.rule, object.get(r, "id", null), object.get(r, "title", null)] | some r in reasons} == {
		["payload.duplicate_button", "yes", null],
		["payload.duplicate_button", null, "Yes"],
	}
}

test_list_sections_and_rows if {
	at_limit := payload.deny with input as interactive(object.union(menu_list, {"section_count": 10, "row_count": 10}))
	sections := payload.deny with input as interactive(object.union(menu_list, {"section_count": 11, "row_count": 10}))
	rows := payload.deny with input as interactive(object.union(menu_list, {"section_count": 2, "row_count": 11}))
	count(at_limit) == 0
	fx.only(sections, "payload.list").sections == 11
	r := fx.only(rows, "payload.list")
	[r.rows, r.limit] == [11, 10]
	contains(r.message, "11 rows in all")
}

test_list_counts_only_for_lists if {
	# a multi-product message has sections of products, with its own limits
	product_list := object.union(menu_list, {"type": "product_list", "section_count": 11, "row_count": 0})
	count(payload.deny) == 0 with input as interactive(product_list)
}

test_list_limits_from_data if {
	reasons := payload.deny with input as interactive(menu_list)
		with data.sendgate.params.payload.interactive.list as {"max_sections": 1, "max_rows": 3}
	{r.message | some r in reasons} == {
		"a list message has 2 sections; WhatsApp allows at most 1",
		"a list message has 4 rows in all; WhatsApp allows at most 3 across its sections",
	}
}

test_location_edges_pass if {
	every coordinates in [[90, 180], [-90, -180], [0, 0], [89.999999, -179.5]] {
		count(payload.deny) == 0 with input as location(coordinates[0], coordinates[1])
	}
}

test_location_out_of_range if {
	north := payload.deny with input as location(90.000001, 0)
	west := payload.deny with input as location(0, -180.5)
	both := payload.deny with input as location(-91, 181)
	r := fx.only(north, "payload.location")
	[r.axis, r.value, r.min, r.max] == ["latitude", 90.000001, -90, 90]
	fx.only(west, "payload.location").axis == "longitude"
	{x.axis | some x in both} == {"latitude", "longitude"}
	contains(r.message, "latitude 90.000001 is out of range")
}

test_location_without_coordinates_fact_passes if {
	# an older input without the fact: nothing to check
	count(payload.deny) == 0 with input as fx.text({"message": {"type": "location"}})
}
