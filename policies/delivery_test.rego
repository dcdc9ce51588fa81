package sendgate.delivery_test

import data.sendgate.delivery
import data.sendgate.fixtures_test as fx

failures(list) := {"recipient": {"delivery_failures": list}}

test_canadian_number_gets_marketing if {
	count(delivery.marketing_deny) == 0 with input as fx.template_input
}

test_us_marketing_blocked if {
	reasons := delivery.marketing_deny with input as fx.tmpl({"recipient": {"country": "US"}})
	r := fx.only(reasons, "delivery.marketing_country")
	r.country == "US"
	contains(r.message, "in US")
}

test_country_case_insensitive if {
	reasons := delivery.marketing_deny with input as fx.tmpl({"recipient": {"country": "us"}})
	fx.ids(reasons) == {"delivery.marketing_country"}
}

test_us_marketing_endpoint_blocked if {
	inp := fx.tmpl({"endpoint": "marketing_messages", "recipient": {"country": "US"}, "template": {"category": "UTILITY"}})
	fx.ids(delivery.marketing_deny) == {"delivery.marketing_country"} with input as inp
}

test_us_utility_not_blocked if {
	inp := fx.tmpl({"recipient": {"country": "US"}, "template": {"category": "UTILITY"}})
	count(delivery.marketing_deny) == 0 with input as inp
}

test_unknown_country_not_blocked if {
	count(delivery.marketing_deny) == 0 with input as fx.tmpl({"recipient": {"country": null}})
}

test_recent_131049_blocks_marketing if {
	inp := fx.tmpl(failures([{"code": 131049, "at": fx.now - 3600}, {"code": 131049, "at": fx.now - 7200}]))
	reasons := delivery.marketing_deny with input as inp
	r := fx.only(reasons, "delivery.marketing_limited")
	r.failed_at == fx.now - 3600
	contains(r.message, "1h ago")
	contains(r.message, "another 23h")
}

test_old_131049_passes if {
	inp := fx.tmpl(failures([{"code": 131049, "at": fx.now - 86400}]))
	count(delivery.marketing_deny) == 0 with input as inp
}

test_131049_does_not_block_utility if {
	inp := fx.tmpl(object.union(failures([{"code": 131049, "at": fx.now - 60}]), {"template": {"category": "UTILITY"}}))
	count(delivery.marketing_deny) == 0 with input as inp
}

test_other_codes_do_not_block_marketing if {
	inp := fx.tmpl(failures([{"code": 131026, "at": fx.now - 60}]))
	count(delivery.marketing_deny) == 0 with input as inp
}

undeliverable(n, age) := [{"code": 131026, "at": fx.now - (age + i)} | some i in numbers.range(1, n)]

test_undeliverable_three_times_held if {
	inp := fx.tmpl(failures(undeliverable(3, 3600)))
	reasons := delivery.deny with input as inp
	r := fx.only(reasons, "delivery.undeliverable")
	[r.count, r.limit, r.window_seconds] == [3, 3, 604800]
	r.last_failed_at == fx.now - 3601
}

test_undeliverable_twice_passes if {
	count(delivery.deny) == 0 with input as fx.tmpl(failures(undeliverable(2, 3600)))
}

test_undeliverable_older_than_a_week_passes if {
	count(delivery.deny) == 0 with input as fx.tmpl(failures(undeliverable(3, 604800)))
}

test_undeliverable_before_the_user_wrote_passes if {
	inp := fx.tmpl(object.union(failures(undeliverable(3, 7200)), {"recipient": {"last_inbound_at": fx.now - 3600}}))
	count(delivery.deny) == 0 with input as inp
}

test_undeliverable_holds_direct_send if {
	inp := fx.direct(failures(undeliverable(4, 60)))
	fx.ids(delivery.deny) == {"delivery.undeliverable"} with input as inp
}

test_undeliverable_does_not_hold_replies if {
	inp := fx.text(object.union(failures(undeliverable(4, 7200)), {"recipient": {"last_inbound_at": fx.now - 60}}))
	count(delivery.deny) == 0 with input as inp
	inp2 := fx.text(failures(undeliverable(4, 60)))
	count(delivery.deny) == 0 with input as inp2
}
