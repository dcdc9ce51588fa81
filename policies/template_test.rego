package sendgate.template_test

import data.sendgate.fixtures_test as fx
import data.sendgate.template

header(n) := {"key": "header", "type": "header", "sub_type": null, "index": null, "parameter_count": n, "parameter_names": [], "parameters": []}

body(n) := {"key": "body", "type": "body", "sub_type": null, "index": null, "parameter_count": n, "parameter_names": [], "parameters": []}

button(i, n) := {
	"key": sprintf("button_%d", [i]), "type": "button", "sub_type": "url", "index": sprintf("%d", [i]),
	"parameter_count": n, "parameter_names": [], "parameters": [],
}

sent(components) := fx.tmpl({"message": {"template": {"components": components}}})

# The catalog side, replaced (not merged) so a test can drop a key.
with_placeholders(inp, placeholders) := object.union(object.remove(inp, ["template"]), {"template": object.union(
	object.remove(inp.template, ["placeholders"]),
	{"placeholders": placeholders},
)})

test_clean_template_passes if {
	reasons := template.deny with input as fx.template_input
	count(reasons) == 0
}

test_free_form_has_no_template_checks if {
	reasons := template.deny with input as fx.text_input
	count(reasons) == 0
}

test_unknown_fires if {
	reasons := template.deny with input as fx.tmpl({"template": {
		"found": false, "language_found": false, "languages": [],
		"status": null, "category": null, "placeholders": {},
	}})
	r := fx.only(reasons, "template.unknown")
	r.template == "spring_sale"
	contains(r.message, "spring_sale")
	fx.ids(reasons) == {"template.unknown"}
}

test_language_fires_and_lists_languages if {
	reasons := template.deny with input as fx.tmpl({"template": {
		"language_found": false, "languages": ["pt_BR", "es"],
		"status": null, "category": null, "placeholders": {},
	}})
	r := fx.only(reasons, "template.language")
	r.language == "en_US"
	r.languages == ["es", "pt_BR"]
	contains(r.message, "es, pt_BR")
	fx.ids(reasons) == {"template.language"}
}

test_not_approved_fires_for_pending_rejected_archived if {
	every status in ["PENDING", "REJECTED", "ARCHIVED", "IN_APPEAL", "LIMIT_EXCEEDED", "DELETED"] {
		reasons := template.deny with input as fx.tmpl({"template": {"status": status}})
		r := fx.only(reasons, "template.not_approved")
		r.status == status
		contains(r.message, status)
		fx.ids(reasons) == {"template.not_approved"}
	}
}

test_not_approved_not_for_approved_or_paused if {
	approved := template.deny with input as fx.template_input
	paused := template.deny with input as fx.tmpl({"template": {"status": "PAUSED"}})
	not "template.not_approved" in fx.ids(approved)
	not "template.not_approved" in fx.ids(paused)
}

test_paused_fires if {
	reasons := template.deny with input as fx.tmpl({"template": {"status": "PAUSED"}})
	fx.only(reasons, "template.paused").status == "PAUSED"
	fx.ids(reasons) == {"template.paused"}
}

test_status_and_params_skipped_when_language_missing if {
	reasons := template.deny with input as fx.tmpl({
		"message": {"template": {"components": [body(5)]}},
		"template": {"language_found": false, "status": "REJECTED"},
	})
	fx.ids(reasons) == {"template.language"}
}

test_params_body_count_mismatch if {
	reasons := template.deny with input as sent([header(1), body(1)])
	r := fx.only(reasons, "template.params")
	r.component == "body"
	r.expected == 2
	r.got == 1
	contains(r.message, "body")
}

test_params_absent_component_counts_zero if {
	reasons := template.deny with input as sent([body(2)])
	r := fx.only(reasons, "template.params")
	r.component == "header"
	r.expected == 1
	r.got == 0
}

test_params_body_without_placeholders_must_be_empty if {
	inp := with_placeholders(sent([body(1)]), {"header": 0, "body": 0})
	reasons := template.deny with input as inp
	r := fx.only(reasons, "template.params")
	r.component == "body"
	r.expected == 0
	r.got == 1
}

test_params_header_not_listed_must_be_empty if {
	inp := with_placeholders(sent([header(1), body(2)]), {"body": 2})
	reasons := template.deny with input as inp
	r := fx.only(reasons, "template.params")
	r.component == "header"
	r.expected == 0
	r.got == 1
}

test_params_header_not_listed_and_not_sent_passes if {
	inp := with_placeholders(sent([body(2)]), {"body": 2})
	reasons := template.deny with input as inp
	count(reasons) == 0
}

test_params_button_exact_passes if {
	inp := with_placeholders(sent([header(1), body(2), button(0, 1)]), {"header": 1, "body": 2, "button_0": 1})
	reasons := template.deny with input as inp
	count(reasons) == 0
}

test_params_button_missing_fires if {
	inp := with_placeholders(sent([header(1), body(2)]), {"header": 1, "body": 2, "button_0": 1})
	reasons := template.deny with input as inp
	r := fx.only(reasons, "template.params")
	r.component == "button_0"
	r.expected == 1
	r.got == 0
}

test_params_unlisted_button_not_checked if {
	# quick-reply and flow buttons take optional parameters: not in placeholders, not checked
	reasons := template.deny with input as sent([header(1), body(2), button(2, 1)])
	count(reasons) == 0
}

test_params_footer_not_checked if {
	footer := {"key": "footer", "type": "footer", "sub_type": null, "index": null, "parameter_count": 1, "parameter_names": [], "parameters": []}
	reasons := template.deny with input as sent([header(1), body(2), footer])
	count(reasons) == 0
}

test_params_null_placeholders_mean_none if {
	inp := with_placeholders(sent([body(1)]), null)
	reasons := template.deny with input as inp
	r := fx.only(reasons, "template.params")
	r.component == "body"
	r.expected == 0
	r.got == 1
}

# -- disabled, and flagged past its disable date ------------------------------

test_disabled_has_its_own_rule if {
	reasons := template.deny with input as fx.tmpl({"template": {"status": "DISABLED"}})
	r := fx.only(reasons, "template.disabled")
	r.status == "DISABLED"
	r.flagged_until == null
	contains(r.message, "disabled")
	fx.ids(reasons) == {"template.disabled"}
}

test_flagged_is_sendable_until_its_disable_date if {
	before := template.deny with input as fx.tmpl({"template": {"flagged": true, "flagged_until": fx.now + 1}})
	count(before) == 0
	undated := template.deny with input as fx.tmpl({"template": {"flagged": true, "flagged_until": null}})
	count(undated) == 0
}

test_flagged_past_its_disable_date_is_disabled if {
	reasons := template.deny with input as fx.tmpl({"template": {"flagged": true, "flagged_until": fx.now - 7200}})
	r := fx.only(reasons, "template.disabled")
	r.flagged_until == fx.now - 7200
	contains(r.message, "2h ago")
	fx.ids(reasons) == {"template.disabled"}
}

test_flag_date_not_read_once_disabled if {
	reasons := template.deny with input as fx.tmpl({"template": {
		"status": "DISABLED", "flagged": true,
		"flagged_until": fx.now - 60,
	}})
	fx.only(reasons, "template.disabled").flagged_until == null
}

# -- parameters as Meta validates them ------------------------------------

text(t) := {"type": "text", "text": t}

named(n, t) := {"type": "text", "parameter_name": n, "text": t}

comp(key, params) := {
	"key": key, "type": key, "sub_type": null, "index": null, "parameter_count": count(params),
	"parameter_names": [p.parameter_name | some p in params; is_string(p.parameter_name)], "parameters": params,
}

btn(i, params) := object.union(comp(sprintf("button_%d", [i]), params), {"type": "button", "sub_type": "url", "index": sprintf("%d", [i])})

# The catalog's side: header TEXT "Hi {{1}}", body "Hello {{1}}, {{2}} off", a footer.
catalog := {
	"header": {"format": "TEXT", "text": "Hi {{1}}", "parameter_names": ["1"]},
	"body": {
		"text": "Hello {{1}}, {{2}} off", "parameter_names": ["1", "2"],
		"fixed_length": 12, "placeholder_counts": {"1": 1, "2": 1},
	},
	"footer": {"text": "Reply STOP to stop"},
	"buttons": [],
}

with_parts(components, facts) := object.union(
	sent(components),
	{"template": object.union({"components": catalog, "parameter_format": "POSITIONAL"}, facts)},
)

sent_header_body(header_text, body_params) := [comp("header", [text(header_text)]), comp("body", body_params)]

test_clean_parameters_pass if {
	reasons := template.deny with input as with_parts(sent_header_body("Ana", [text("Ana"), text("20%")]), {})
	count(reasons) == 0
}

test_param_format_newline_tab_and_spaces if {
	every bad in ["two\nlines", "cr\rhere", "a\ttab", "five     spaces"] {
		reasons := template.deny with input as with_parts(sent_header_body("Ana", [text(bad), text("20%")]), {})
		r := fx.only(reasons, "template.param_format")
		r.component == "body"
		r.parameter == 0
		contains(r.message, "parameter 1 of component body")
		fx.ids(reasons) == {"template.param_format"}
	}
}

test_param_format_four_spaces_pass if {
	reasons := template.deny with input as with_parts(sent_header_body("Ana", [text("four    spaces"), text("x")]), {})
	count(reasons) == 0
}

test_param_format_follows_data if {
	reasons := template.deny with input as with_parts(sent_header_body("Ana", [text("two  spaces"), text("x")]), {})
		with data.sendgate.params.template.max_consecutive_spaces as 1
	fx.only(reasons, "template.param_format").component == "body"
}

test_param_empty if {
	reasons := template.deny with input as with_parts(sent_header_body(" ", [text("Ana"), text("")]), {})
	ids := {[r.component, r.parameter] | some r in reasons; r.rule == "template.param_empty"}
	ids == {["header", 0], ["body", 1]}
	fx.ids(reasons) == {"template.param_empty"}
}

auth_input(body_code, button_code) := with_parts(
	[comp("body", [text(body_code)]), btn(0, [text(button_code)])],
	{"category": "AUTHENTICATION", "placeholders": {"header": 0, "body": 1, "button_0": 1}, "components": {
		"header": null, "footer": null,
		"body": {
			"text": "{{1}} is your verification code.", "parameter_names": ["1"],
			"fixed_length": 27, "placeholder_counts": {"1": 1},
		},
		"buttons": [{"index": "0", "type": "URL"}],
	}},
)

test_auth_code_of_15_passes if {
	reasons := template.deny with input as auth_input("123456789012345", "123456789012345")
	count(reasons) == 0
}

test_auth_code_over_15_in_body_and_button if {
	reasons := template.deny with input as auth_input("1234567890123456", "1234567890123456")
	found := {[r.component, r.length, r.limit] | some r in reasons; r.rule == "template.auth_code_length"}
	found == {["body", 16, 15], ["button_0", 16, 15]}
	fx.ids(reasons) == {"template.auth_code_length"}
}

test_auth_code_length_only_for_authentication if {
	inp := object.union(auth_input("1234567890123456", "x"), {"template": {"category": "UTILITY"}})
	reasons := template.deny with input as inp
	count(reasons) == 0
}

test_header_length if {
	ok := template.deny with input as with_parts(sent_header_body(concat("", ["a" | some _ in numbers.range(1, 60)]), [text("a"), text("b")]), {})
	count(ok) == 0
	long := concat("", ["a" | some _ in numbers.range(1, 61)])
	reasons := template.deny with input as with_parts(sent_header_body(long, [text("a"), text("b")]), {})
	r := fx.only(reasons, "template.header_length")
	[r.length, r.limit, r.component] == [61, 60, "header"]
	fx.ids(reasons) == {"template.header_length"}
}

chars(n) := concat("", ["x" | some _ in numbers.range(1, n)])

emoji(n) := concat("", ["🎉" | some _ in numbers.range(1, n)])

# An emoji is one character (regorus's count() of a string gives two: lib.characters).
test_lengths_count_characters_not_utf16_units if {
	fits := template.deny with input as with_parts(sent_header_body(emoji(60), [text(emoji(500)), text(emoji(500))]), {})
	count(fits) == 0
	over := template.deny with input as with_parts(sent_header_body(emoji(61), [text(emoji(1012)), text("x")]), {})
	fx.only(over, "template.header_length").length == 61
	fx.only(over, "template.body_length").length == 1025
	codes := template.deny with input as auth_input(emoji(15), emoji(16))
	{[r.component, r.length] | some r in codes} == {["button_0", 16]}
}

test_body_length_counts_the_filled_in_text if {
	# "Hello {{1}}, {{2}} off" is 22 characters: 12 around {{1}} and {{2}}, which become 1000 + 12
	fits := template.deny with input as with_parts(sent_header_body("Ana", [text(chars(1000)), text(chars(12))]), {})
	count(fits) == 0
	reasons := template.deny with input as with_parts(sent_header_body("Ana", [text(chars(1000)), text(chars(13))]), {})
	r := fx.only(reasons, "template.body_length")
	[r.length, r.limit] == [1025, 1024]
	fx.ids(reasons) == {"template.body_length"}
}

test_body_length_counts_a_placeholder_each_time_it_appears if {
	inp := with_parts([comp("body", [text(chars(600))])], {
		"placeholders": {"header": 0, "body": 1},
		"components": {
			"header": {"format": "IMAGE", "text": null, "parameter_names": []},
			"body": {"text": "{{1}} and {{1}}", "parameter_names": ["1"], "fixed_length": 5, "placeholder_counts": {"1": 2}},
		},
	})
	reasons := template.deny with input as inp
	fx.only(reasons, "template.body_length").length == 1205
}

test_body_only_template_allows_32768 if {
	body_only := {"header": null, "footer": null, "buttons": [], "body": {
		"text": "{{1}}", "parameter_names": ["1"],
		"fixed_length": 0, "placeholder_counts": {"1": 1},
	}}
	inp := with_parts([comp("body", [text(chars(2000))])], {"placeholders": {"header": 0, "body": 1}, "components": body_only})
	count(template.deny) == 0 with input as inp
	over := with_parts([comp("body", [text(chars(32769))])], {"placeholders": {"header": 0, "body": 1}, "components": body_only})
	fx.only(template.deny, "template.body_length").limit == 32768 with input as over
}

test_body_length_with_named_currency_and_unknown_parameters if {
	body := {
		"text": "{{name}} pays {{amount}} by {{day}}", "parameter_names": ["name", "amount", "day"],
		"fixed_length": 10, "placeholder_counts": {"name": 1, "amount": 1, "day": 1},
	}
	params := [
		named("name", chars(1000)),
		{"type": "currency", "parameter_name": "amount", "currency": {"fallback_value": "$100.99", "code": "USD", "amount_1000": 100990}},
		{"type": "date_time", "parameter_name": "day", "date_time": {}},
	]
	inp := with_parts([comp("body", params)], {
		"placeholders": {"header": 0, "body": 3}, "parameter_format": "NAMED",
		"components": object.union(catalog, {"header": null, "body": body}),
	})

	# 1000 + " pays " + "$100.99" + " by " + "" (no fallback): 1017
	count(template.deny) == 0 with input as inp
	longer := json.patch(inp, [{"op": "replace", "path": "/message/template/components/0/parameters/0/text", "value": chars(1008)}])
	fx.only(template.deny, "template.body_length").length == 1025 with input as longer
}

test_param_name_not_declared if {
	inp := with_parts([comp("header", [text("Ana")]), comp("body", [named("first_name", "Ana"), text("x")])], {})
	reasons := template.deny with input as inp
	r := fx.only(reasons, "template.param_name")
	[r.component, r.parameter_name, r.declared] == ["body", "first_name", ["1", "2"]]
	contains(r.message, "first_name")
	fx.ids(reasons) == {"template.param_name"}
}

test_param_name_declared_passes if {
	body := {"text": "Hi {{first_name}}", "parameter_names": ["first_name"]}
	inp := with_parts([comp("body", [named("first_name", "Ana")])], {
		"placeholders": {"header": 0, "body": 1}, "parameter_format": "NAMED",
		"components": object.union(catalog, {"header": null, "body": body}),
	})
	count(template.deny) == 0 with input as inp
}

test_param_name_missing_for_a_named_template if {
	body := {"text": "Hi {{first_name}}", "parameter_names": ["first_name"]}
	inp := with_parts([comp("body", [text("Ana")])], {
		"placeholders": {"header": 0, "body": 1}, "parameter_format": "NAMED",
		"components": object.union(catalog, {"header": null, "body": body}),
	})
	r := fx.only(template.deny, "template.param_name") with input as inp
	[r.component, r.parameter_name, r.declared] == ["body", null, ["first_name"]]
}

media(kind) := {"type": kind, kind: {"link": "https://cdn.example/x"}}

test_header_format_mismatch if {
	image_header := object.union(catalog, {"header": {"format": "IMAGE", "text": null, "parameter_names": []}})
	ok := with_parts([comp("header", [media("image")]), comp("body", [text("a"), text("b")])], {"components": image_header})
	count(template.deny) == 0 with input as ok
	every kind in ["video", "document", "text"] {
		bad := with_parts([comp("header", [media(kind)]), comp("body", [text("a"), text("b")])], {"components": image_header})
		r := fx.only(template.deny, "template.header_format") with input as bad
		[r.expected, r.got] == ["IMAGE", kind]
	}
}

test_header_format_text_header_takes_text_only if {
	bad := with_parts([comp("header", [media("image")]), comp("body", [text("a"), text("b")])], {})
	r := fx.only(template.deny, "template.header_format") with input as bad
	[r.expected, r.got] == ["TEXT", "image"]
	currency := {"type": "currency", "currency": {"fallback_value": "$1", "code": "USD", "amount_1000": 1000}}
	ok := with_parts([comp("header", [currency]), comp("body", [text("a"), text("b")])], {})
	count(template.deny) == 0 with input as ok
}

test_body_length_needs_the_body_text if {
	inp := with_parts(sent_header_body("Ana", [text(chars(2000)), text("x")]), {"components": object.union(catalog, {"body": {
		"text": null, "parameter_names": [],
		"fixed_length": null, "placeholder_counts": {},
	}})})
	count(template.deny) == 0 with input as inp
}

test_parameter_checks_wait_for_the_template if {
	inp := object.union(with_parts(sent_header_body("", [text("a\nb"), text("")]), {}), {"template": {"language_found": false}})
	fx.ids(template.deny) == {"template.language"} with input as inp
}
