package sendgate.consent_test

import data.sendgate.consent
import data.sendgate.fixtures_test as fx

test_clean_template_needs_nothing if {
	reasons := consent.deny with input as fx.template_input
	count(reasons) == 0
}

test_missing_fires_for_template_without_record if {
	reasons := consent.deny with input as fx.tmpl({"recipient": {"consent": null}})
	r := fx.only(reasons, "consent.missing")
	r.category == "marketing"
	r.recipient == "14165551234"
	contains(r.message, "14165551234")
	fx.ids(reasons) == {"consent.missing"}
}

test_missing_fires_for_utility_template if {
	reasons := consent.deny with input as fx.tmpl({"recipient": {"consent": null}, "template": {"category": "UTILITY"}})
	fx.only(reasons, "consent.missing").category == "utility"
}

test_missing_not_for_free_form if {
	reasons := consent.deny with input as fx.text({"recipient": {"consent": null}})
	count(reasons) == 0
}

test_opted_out_fires_with_category if {
	reasons := consent.deny with input as fx.tmpl({"recipient": {"consent": {"status": "opted_out", "categories": []}}})
	r := fx.only(reasons, "consent.opted_out")
	r.category == "marketing"
	r.source == "web-form"
	contains(r.message, "opted out")
	contains(r.message, "from web-form")
	fx.ids(reasons) == {"consent.opted_out"}
}

test_opted_out_time_in_whole_seconds if {
	at := {"status": "opted_out", "updated_at": 1865120655.5816185}
	reasons := consent.deny with input as fx.tmpl({"recipient": {"consent": at}})
	contains(fx.only(reasons, "consent.opted_out").message, "at Unix time 1865120655)")
	none := {"status": "opted_out", "updated_at": null}
	unknown := consent.deny with input as fx.tmpl({"recipient": {"consent": none}})
	contains(fx.only(unknown, "consent.opted_out").message, "at Unix time unknown)")
}

test_opted_out_unknown_source if {
	reasons := consent.deny with input as fx.tmpl({"recipient": {"consent": {"status": "opted_out", "source": null}}})
	contains(fx.only(reasons, "consent.opted_out").message, "from an unknown source")
}

test_opted_out_fires_for_every_category if {
	reasons := consent.deny with input as fx.tmpl({
		"recipient": {"consent": {"status": "opted_out"}},
		"template": {"category": "AUTHENTICATION"},
	})
	fx.only(reasons, "consent.opted_out").category == "authentication"
}

test_opted_out_category_unknown_when_not_in_catalog if {
	reasons := consent.deny with input as fx.tmpl({
		"recipient": {"consent": {"status": "opted_out"}},
		"template": {"found": false, "language_found": false, "status": null, "category": null},
	})
	fx.only(reasons, "consent.opted_out").category == "unknown"
}

test_opted_out_not_for_free_form if {
	reasons := consent.deny with input as fx.text({"recipient": {"consent": {"status": "opted_out"}}})
	count(reasons) == 0
}

test_category_fires_when_marketing_not_held if {
	reasons := consent.deny with input as fx.tmpl({"recipient": {"consent": {"categories": ["utility"]}}})
	r := fx.only(reasons, "consent.category")
	r.category == "marketing"
	r.template_category == "marketing"
	r.categories == ["utility"]
	contains(r.message, "marketing")
}

test_category_fires_with_null_categories if {
	reasons := consent.deny with input as fx.tmpl({"recipient": {"consent": {"categories": null}}})
	fx.ids(reasons) == {"consent.category"}
}

test_category_is_case_insensitive if {
	reasons := consent.deny with input as fx.tmpl({"recipient": {"consent": {"categories": ["Marketing"]}}})
	count(reasons) == 0
}

test_category_not_needed_for_utility if {
	reasons := consent.deny with input as fx.tmpl({
		"recipient": {"consent": {"categories": []}},
		"template": {"category": "UTILITY"},
	})
	count(reasons) == 0
}

test_category_marketing_endpoint_means_marketing if {
	reasons := consent.deny with input as fx.tmpl({
		"endpoint": "marketing_messages",
		"recipient": {"consent": {"categories": ["utility"]}},
		"template": {"found": false, "language_found": false, "status": null, "category": null},
	})
	fx.only(reasons, "consent.category").category == "marketing"
}

test_category_from_data if {
	reasons := consent.deny with input as fx.tmpl({"template": {"category": "UTILITY"}})
		with data.sendgate.params.consent.required_categories as {"MARKETING": "marketing", "UTILITY": "transactional"}
	fx.only(reasons, "consent.category").category == "transactional"
}

test_category_mapping_from_data if {
	held := consent.deny with input as fx.tmpl({"recipient": {"consent": {"categories": ["promotions"]}}})
		with data.sendgate.params.consent.required_categories.MARKETING as "promotions"
	lacking := consent.deny with input as fx.template_input
		with data.sendgate.params.consent.required_categories.MARKETING as "promotions"
	count(held) == 0
	fx.only(lacking, "consent.category").category == "promotions"
}

test_missing_without_recipient_facts if {
	reasons := consent.deny with input as fx.tmpl({"recipient": null})
	fx.ids(reasons) == {"consent.missing"}
}

test_category_without_categories_key if {
	inp := json.remove(fx.template_input, ["recipient/consent/categories"])
	reasons := consent.deny with input as inp
	fx.only(reasons, "consent.category").categories == []
}

test_direct_send_with_consent_passes if {
	count(consent.deny) == 0 with input as fx.direct_send_input
}

test_direct_send_needs_a_record if {
	reasons := consent.deny with input as fx.direct({"recipient": {"consent": null}})
	r := fx.only(reasons, "consent.missing")
	r.category == "utility"
	contains(r.message, "Direct Send message (category utility)")
}

test_direct_send_opted_out if {
	reasons := consent.deny with input as fx.direct({"recipient": {"consent": {"status": "opted_out"}}})
	r := fx.only(reasons, "consent.opted_out")
	contains(r.message, "no Direct Send message may go to them (category utility)")
}

test_direct_send_required_category if {
	inp := fx.direct({"recipient": {"consent": {"categories": ["marketing"]}}})
	reasons := consent.deny with input as inp with data.sendgate.params.consent.required_categories as {"UTILITY": "utility"}
	r := fx.only(reasons, "consent.category")
	r.category == "utility"
}

test_direct_send_default_needs_no_category if {
	inp := fx.direct({"recipient": {"consent": {"categories": []}}})
	count(consent.deny) == 0 with input as inp
}

test_category_without_direct_send_account_needs_no_consent if {
	# direct_send.not_enabled answers it
	inp := fx.direct({"account": {"direct_send": false}, "recipient": {"consent": null}})
	count(consent.deny) == 0 with input as inp
}
