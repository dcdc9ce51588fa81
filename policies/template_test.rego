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

test_not_approved_fires_for_pending_rejected_disabled if {
	every status in ["PENDING", "REJECTED", "DISABLED", "IN_APPEAL", "LIMIT_EXCEEDED"] {
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
