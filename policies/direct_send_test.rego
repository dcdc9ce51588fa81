package sendgate.direct_send_test

import data.sendgate.direct_send
import data.sendgate.fixtures_test as fx

test_enabled_account_passes if {
	reasons := direct_send.deny with input as fx.direct_send_input
	count(reasons) == 0
}

test_not_enabled_denied if {
	reasons := direct_send.deny with input as fx.direct({"account": {"direct_send": false}})
	r := fx.only(reasons, "direct_send.not_enabled")
	r.category == "utility"
	contains(r.message, "Acme (106540352242922)")
	contains(r.message, "text message")
}

test_not_enabled_unknown_account_bare_id if {
	reasons := direct_send.deny with input as fx.direct({"account": {"direct_send": null, "name": null}})
	r := fx.only(reasons, "direct_send.not_enabled")
	contains(r.message, "account 106540352242922:")
}

test_no_category_no_rules if {
	reasons := direct_send.deny with input as fx.text({"account": {"direct_send": false}, "message": {"ttl_seconds": 5}})
	count(reasons) == 0
}

test_ttl_inside_ranges if {
	every inp in [
		fx.direct({"message": {"ttl_seconds": 30}}),
		fx.direct({"message": {"ttl_seconds": 43200}}),
		fx.direct({"message": {"category": "authentication", "ttl_seconds": 900}}),
	] {
		count(direct_send.deny) == 0 with input as inp
	}
}

test_ttl_over_utility_max if {
	reasons := direct_send.deny with input as fx.direct({"message": {"ttl_seconds": 43201}})
	r := fx.only(reasons, "direct_send.ttl_range")
	[r.min, r.max, r.ttl_seconds] == [30, 43200, 43201]
	contains(r.message, "30 to 43200 seconds (30s to 12h)")
}

test_ttl_under_min if {
	reasons := direct_send.deny with input as fx.direct({"message": {"ttl_seconds": 29}})
	fx.ids(reasons) == {"direct_send.ttl_range"}
}

test_ttl_over_authentication_max if {
	reasons := direct_send.deny with input as fx.direct({"message": {"category": "authentication", "ttl_seconds": 901}})
	r := fx.only(reasons, "direct_send.ttl_range")
	r.max == 900
	r.category == "authentication"
}

test_authentication_to_bsuid_denied if {
	inp := fx.direct({"message": {"category": "authentication", "recipient": "US.13491208655302741918", "recipient_field": "recipient"}})
	reasons := direct_send.deny with input as inp
	r := fx.only(reasons, "direct_send.authentication_bsuid")
	contains(r.message, "14165551234") # recipient_label prefers the recipient fact's id
}

test_authentication_to_phone_passes if {
	reasons := direct_send.deny with input as fx.direct({"message": {"category": "authentication"}})
	count(reasons) == 0
}

test_utility_to_bsuid_passes if {
	reasons := direct_send.deny with input as fx.direct({"message": {"recipient_field": "recipient"}})
	count(reasons) == 0
}
