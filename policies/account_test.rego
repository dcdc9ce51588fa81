package sendgate.account_test

import data.sendgate.account
import data.sendgate.fixtures_test as fx

test_known_account_passes if {
	reasons := account.deny with input as fx.template_input
	count(reasons) == 0
}

test_unknown_account_denied if {
	reasons := account.deny with input as fx.text({"account": {"known": false, "waba_id": null, "name": null}})
	r := fx.only(reasons, "account.unknown")
	r.phone_number_id == "106540352242922"
	contains(r.message, "106540352242922")
}

test_unknown_account_allowed_by_gateway if {
	reasons := account.deny with input as fx.text({
		"account": {"known": false, "waba_id": null, "name": null},
		"gateway": {"allow_unknown_accounts": true},
	})
	count(reasons) == 0
}

test_unknown_account_denied_without_gateway_setting if {
	reasons := account.deny with input as fx.text({"account": {"known": false}, "gateway": null})
	fx.ids(reasons) == {"account.unknown"}
}

test_unknown_account_denied_for_status_calls if {
	reasons := account.deny with input as fx.status({"account": {"known": false}})
	fx.ids(reasons) == {"account.unknown"}
}

test_market_outside_denied if {
	reasons := account.deny with input as fx.text({"account": {"markets": ["BR", "MX"]}})
	r := fx.only(reasons, "account.market")
	r.country == "CA"
	r.markets == ["BR", "MX"]
	contains(r.message, "CA")
	contains(r.message, "BR, MX")
}

test_market_inside_passes if {
	reasons := account.deny with input as fx.text({"account": {"markets": ["CA", "BR"]}})
	count(reasons) == 0
}

test_market_case_insensitive if {
	reasons := account.deny with input as fx.text({"account": {"markets": ["ca"]}})
	count(reasons) == 0
}

test_market_null_means_every_market if {
	reasons := account.deny with input as fx.text({"account": {"markets": null}})
	count(reasons) == 0
}

test_market_unknown_country_passes if {
	reasons := account.deny with input as fx.text({"account": {"markets": ["BR"]}, "recipient": {"country": null}})
	count(reasons) == 0
}

test_market_no_recipient_passes if {
	reasons := account.deny with input as fx.status({"account": {"markets": ["BR"]}})
	count(reasons) == 0
}

test_market_message_names_account if {
	named := account.deny with input as fx.text({"account": {"markets": ["BR"]}})
	unnamed := account.deny with input as fx.text({"account": {"markets": ["BR"], "name": null}})
	contains(fx.only(named, "account.market").message, "Acme (106540352242922)")
	msg := fx.only(unnamed, "account.market").message
	contains(msg, "account 106540352242922 may")
}

paused := {"alert": "spam", "message": "Meta errors [131048]: 1 in the last 3600s", "since": 1763999000.5}

test_quality_red_pauses_marketing if {
	reasons := account.marketing_deny with input as fx.tmpl({"account": {"quality": "RED", "status": null}})
	r := fx.only(reasons, "account.quality")
	r.quality == "RED"
	r.status == null
	contains(r.message, "quality RED and status unknown")
	contains(r.message, "Acme (106540352242922)")
}

test_flagged_pauses_marketing_with_one_reason if {
	reasons := account.marketing_deny with input as fx.tmpl({"account": {"quality": "RED", "status": "FLAGGED"}})
	count(reasons) == 1
	fx.only(reasons, "account.quality").status == "FLAGGED"
}

test_flagged_without_quality_fact if {
	reasons := account.marketing_deny with input as fx.tmpl({"account": {"status": "FLAGGED"}})
	fx.only(reasons, "account.quality").quality == null
}

test_healthy_account_not_paused if {
	reasons := account.marketing_deny with input as fx.tmpl({"account": {"quality": "YELLOW", "status": "CONNECTED", "marketing_paused": null}})
	count(reasons) == 0
	none := account.marketing_deny with input as fx.tmpl({})
	count(none) == 0
}

test_quality_pause_only_for_marketing if {
	utility := fx.tmpl({"account": {"quality": "RED", "status": "FLAGGED", "marketing_paused": paused}, "template": {"category": "UTILITY"}})
	count(account.marketing_deny) == 0 with input as utility
	d := data.sendgate.decision with input as utility
	d.allow == true
	text := fx.text({"account": {"quality": "RED", "status": "FLAGGED", "marketing_paused": paused}})
	count(account.marketing_deny) == 0 with input as text
}

test_quality_pause_through_decision if {
	d := data.sendgate.decision with input as fx.tmpl({"account": {"status": "FLAGGED"}})
	[r.rule | some r in d.deny] == ["account.quality"]
	on_endpoint := data.sendgate.decision with input as fx.tmpl({
		"endpoint": "marketing_messages",
		"account": {"quality": "RED"},
		"template": {"category": "UTILITY"},
	})
	[r.rule | some r in on_endpoint.deny] == ["account.quality"]
}

test_paused_account_denies_marketing if {
	reasons := account.marketing_deny with input as fx.tmpl({"account": {"marketing_paused": paused}})
	r := fx.only(reasons, "account.paused")
	r.alert == "spam"
	r.since == 1763999000.5
	contains(r.message, "since Unix time 1763999000 (alert spam: Meta errors [131048]")
	contains(r.message, "DELETE /admin/v1/accounts/106540352242922/pause")
}

test_pause_levels_come_from_params if {
	reasons := account.marketing_deny with input as fx.tmpl({"account": {"quality": "YELLOW"}})
		with data.sendgate.params.account.pause_marketing as {"qualities": {"YELLOW": true, "RED": true}, "statuses": {}}
	fx.only(reasons, "account.quality").quality == "YELLOW"
}

restricted(type, expires_at) := {"account": {"restrictions": [{"type": type, "expires_at": expires_at}]}}

test_biz_restriction_denies_templates if {
	reasons := account.deny with input as fx.tmpl(restricted("RESTRICTED_BIZ_INITIATED_MESSAGING", fx.now + 7200))
	r := fx.only(reasons, "account.restricted")
	r.restriction == "RESTRICTED_BIZ_INITIATED_MESSAGING"
	r.expires_at == fx.now + 7200
	contains(r.message, "in 2h")
	contains(r.message, "business-initiated")
}

test_biz_restriction_denies_direct_send if {
	reasons := account.deny with input as fx.direct(restricted("RESTRICTED_BIZ_INITIATED_MESSAGING", fx.now + 60))
	fx.ids(reasons) == {"account.restricted"}
}

test_biz_restriction_lets_replies_through if {
	reasons := account.deny with input as fx.text(restricted("RESTRICTED_BIZ_INITIATED_MESSAGING", fx.now + 60))
	count(reasons) == 0
}

test_biz_restriction_expired if {
	reasons := account.deny with input as fx.tmpl(restricted("RESTRICTED_BIZ_INITIATED_MESSAGING", fx.now))
	count(reasons) == 0
}

test_restriction_without_expiry_in_force if {
	reasons := account.deny with input as fx.tmpl(restricted("RESTRICTED_BIZ_INITIATED_MESSAGING", null))
	r := fx.only(reasons, "account.restricted")
	contains(r.message, "with no expiry given")
}

test_customer_restriction_denies_replies if {
	reasons := account.deny with input as fx.text(restricted("RESTRICTED_CUSTOMER_INITIATED_MESSAGING", fx.now + 60))
	r := fx.only(reasons, "account.restricted")
	contains(r.message, "replies to users")
}

test_customer_restriction_lets_business_initiated_through if {
	every inp in [
		fx.tmpl(restricted("RESTRICTED_CUSTOMER_INITIATED_MESSAGING", fx.now + 60)),
		fx.direct(restricted("RESTRICTED_CUSTOMER_INITIATED_MESSAGING", fx.now + 60)),
		fx.status(restricted("RESTRICTED_CUSTOMER_INITIATED_MESSAGING", fx.now + 60)),
		fx.encrypted(restricted("RESTRICTED_CUSTOMER_INITIATED_MESSAGING", fx.now + 60)),
	] {
		count(account.deny) == 0 with input as inp
	}
}

test_add_phone_number_restriction_blocks_no_send if {
	reasons := account.deny with input as fx.tmpl(restricted("RESTRICTED_ADD_PHONE_NUMBER_ACTION", fx.now + 60))
	count(reasons) == 0
}
