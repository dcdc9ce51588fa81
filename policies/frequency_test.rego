package sendgate.frequency_test

import data.sendgate.fixtures_test as fx
import data.sendgate.frequency

marketing_history(times) := fx.tmpl({"recipient": {"history": {"marketing_sent_at": times}}})

test_no_history_passes if {
	reasons := frequency.deny with input as fx.template_input
	deferred := frequency.defer with input as fx.template_input
	count(reasons) == 0
	count(deferred) == 0
}

test_marketing_daily_cap_reached if {
	reasons := frequency.deny with input as marketing_history([fx.now - 100])
	r := fx.only(reasons, "frequency.marketing")
	r.limit == 1
	r.count == 1
	r.window_seconds == 86400
	r.category == "marketing"
	contains(r.message, "16505551234")
}

test_marketing_daily_cap_just_inside_window if {
	reasons := frequency.deny with input as marketing_history([fx.now - 86399])
	fx.only(reasons, "frequency.marketing").window_seconds == 86400
}

test_marketing_send_exactly_24h_ago_not_counted if {
	# strictly newer than now - 86400 counts; exactly 24h ago does not (and 1 < 2 for the week)
	reasons := frequency.deny with input as marketing_history([fx.now - 86400])
	count(reasons) == 0
}

test_marketing_weekly_cap_reached if {
	reasons := frequency.deny with input as marketing_history([fx.now - 90000, fx.now - 200000])
	r := fx.only(reasons, "frequency.marketing")
	r.window_seconds == 604800
	r.limit == 2
	r.count == 2
}

test_marketing_weekly_cap_below if {
	reasons := frequency.deny with input as marketing_history([fx.now - 90000, fx.now - 604800])
	count(reasons) == 0
}

test_marketing_both_caps if {
	reasons := frequency.deny with input as marketing_history([fx.now - 10, fx.now - 90000])
	{r.window_seconds | some r in reasons} == {86400, 604800}
}

test_utility_not_capped if {
	inp := object.union(marketing_history([fx.now - 10, fx.now - 20, fx.now - 30]), {"template": {"category": "UTILITY"}})
	reasons := frequency.deny with input as inp
	count(reasons) == 0
}

test_marketing_endpoint_capped_without_category if {
	inp := object.union(marketing_history([fx.now - 10]), {
		"endpoint": "marketing_messages",
		"template": {"found": false, "language_found": false, "status": null, "category": null},
	})
	reasons := frequency.deny with input as inp
	fx.ids(reasons) == {"frequency.marketing"}
}

test_marketing_null_history_passes if {
	reasons := frequency.deny with input as fx.tmpl({"recipient": {"history": null}})
	count(reasons) == 0
}

test_marketing_caps_from_data if {
	reasons := frequency.deny with input as marketing_history([fx.now - 10])
		with data.sendgate.params.frequency.marketing_caps as [{"window_seconds": 3600, "max": 2}]
	loose := frequency.deny with input as marketing_history([fx.now - 4000])
		with data.sendgate.params.frequency.marketing_caps as [{"window_seconds": 3600, "max": 1}]
	count(reasons) == 0
	count(loose) == 0
}

test_marketing_cap_of_zero if {
	caps := [{"window_seconds": 3600, "max": 0}]
	none := frequency.deny with input as marketing_history([]) with data.sendgate.params.frequency.marketing_caps as caps
	null_history := frequency.deny with input as fx.tmpl({"recipient": {"history": null}})
		with data.sendgate.params.frequency.marketing_caps as caps
	no_recipient := frequency.deny with input as fx.tmpl({"recipient": null})
		with data.sendgate.params.frequency.marketing_caps as caps
	fx.only(none, "frequency.marketing").count == 0
	fx.only(null_history, "frequency.marketing").count == 0
	fx.only(no_recipient, "frequency.marketing").limit == 0
}

test_marketing_cap_counts_only_inside_window if {
	reasons := frequency.deny with input as marketing_history([fx.now - 10, fx.now - 3000, fx.now - 7200])
		with data.sendgate.params.frequency.marketing_caps as [{"window_seconds": 3600, "max": 2}]
	r := fx.only(reasons, "frequency.marketing")
	r.count == 2
	r.limit == 2
}

last_sent(t) := fx.text({"recipient": {"history": {"last_sent_at": t}}})

test_pair_rate_defers_inside_6s if {
	deferred := frequency.defer with input as last_sent(fx.now - 2.5)
	r := fx.only(deferred, "frequency.pair_rate")
	r.retry_after == 4
	r.elapsed == 2
	r.last_sent_at == fx.now - 2.5
	contains(r.message, "went out 2s ago")
	r.min_interval == 6
}

test_pair_rate_just_inside_boundary if {
	deferred := frequency.defer with input as last_sent(fx.now - 5.9)
	fx.only(deferred, "frequency.pair_rate").retry_after == 1
}

test_pair_rate_same_second if {
	deferred := frequency.defer with input as last_sent(fx.now)
	fx.only(deferred, "frequency.pair_rate").retry_after == 6
}

test_pair_rate_exactly_6s_passes if {
	deferred := frequency.defer with input as last_sent(fx.now - 6)
	count(deferred) == 0
}

test_pair_rate_no_previous_send_passes if {
	deferred := frequency.defer with input as last_sent(null)
	count(deferred) == 0
}

test_pair_rate_applies_to_templates if {
	deferred := frequency.defer with input as fx.tmpl({"recipient": {"history": {"last_sent_at": fx.now - 1}}})
	fx.only(deferred, "frequency.pair_rate").retry_after == 5
}

test_pair_rate_is_not_a_deny if {
	reasons := frequency.deny with input as last_sent(fx.now - 1)
	count(reasons) == 0
}

test_pair_rate_interval_from_data if {
	deferred := frequency.defer with input as last_sent(fx.now - 6)
		with data.sendgate.params.frequency.pair_min_interval_seconds as 10
	fx.only(deferred, "frequency.pair_rate").retry_after == 4
}
