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
	r.country == "US"
	r.markets == ["BR", "MX"]
	contains(r.message, "US")
	contains(r.message, "BR, MX")
}

test_market_inside_passes if {
	reasons := account.deny with input as fx.text({"account": {"markets": ["US", "BR"]}})
	count(reasons) == 0
}

test_market_case_insensitive if {
	reasons := account.deny with input as fx.text({"account": {"markets": ["us"]}})
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
