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
	contains(r.message, "14165551234")
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

# Sends from this number to this recipient, newest first, as the gateway lists them.
pair_sent(times) := fx.text({"recipient": {"history": {"pair_sent_at": times}}})

# A bucket of 3, refilled one every 6 s (the rule reads both from data).
small_bucket := {"interval_seconds": 6, "burst": 3}

test_pair_rate_burst_allowed if {
	# the defaults: a text, an image and buttons (and two more) at once all go out
	burst := data.sendgate.params.frequency.pair_rate.burst
	deferred := frequency.defer with input as pair_sent([fx.now | some _ in numbers.range(1, burst - 1)])
	count(deferred) == 0
}

test_pair_rate_next_after_burst_deferred if {
	deferred := frequency.defer with input as pair_sent([fx.now - 1, fx.now - 1.5, fx.now - 2])
		with data.sendgate.params.frequency.pair_rate as small_bucket
	r := fx.only(deferred, "frequency.pair_rate")

	# a token comes back 6 s after the oldest of the three: in 4 s
	r.retry_after == 4
	r.burst == 3
	r.interval_seconds == 6
	r.sent_in_window == 3
	r.window_seconds == 18
	r.message == "3 message(s) to 14165551234 in the last 18s; the pair rate is a burst of 3, then one per 6 s (Meta error 131056): retry in 4 s"
}

test_pair_rate_defaults_from_data_json if {
	# 5 at once, then one every 6 s
	r := frequency.defer with input as pair_sent([fx.now, fx.now, fx.now, fx.now, fx.now])
	d := fx.only(r, "frequency.pair_rate")
	d.retry_after == 6
	d.burst == 5
	d.interval_seconds == 6
}

test_pair_rate_refills_after_the_interval if {
	# 6 s after the oldest of a full burst, one token is back
	refilled := frequency.defer with input as pair_sent([fx.now - 1, fx.now - 3, fx.now - 6])
		with data.sendgate.params.frequency.pair_rate as small_bucket
	just_before := frequency.defer with input as pair_sent([fx.now - 1, fx.now - 3, fx.now - 5.999])
		with data.sendgate.params.frequency.pair_rate as small_bucket
	count(refilled) == 0
	fx.only(just_before, "frequency.pair_rate").retry_after == 1
}

test_pair_rate_borrowed_tokens_come_back_one_per_interval if {
	# 3 at once at now - 7, a 4th 6 s later (the token refilled by then): the next
	# token is back 12 s after the burst, in 5 s
	deferred := frequency.defer with input as pair_sent([fx.now - 1, fx.now - 7, fx.now - 7, fx.now - 7])
		with data.sendgate.params.frequency.pair_rate as small_bucket
	r := fx.only(deferred, "frequency.pair_rate")
	r.retry_after == 5
	r.sent_in_window == 4

	# 12 s after the 4th, two tokens are back
	later := frequency.defer with input as pair_sent([fx.now, fx.now - 12, fx.now - 18, fx.now - 18, fx.now - 18])
		with data.sendgate.params.frequency.pair_rate as small_bucket
	count(later) == 0
}

test_pair_rate_waits_for_the_binding_send if {
	# k = 2: 6 s after now - 4.5 -> 1.5; k = 3: 12 s after now - 9 -> 3; k = 4: 18 s after now - 20 -> none
	times := [fx.now - 1, fx.now - 2, fx.now - 4.5, fx.now - 9, fx.now - 20]
	deferred := frequency.defer with input as pair_sent(times)
		with data.sendgate.params.frequency.pair_rate as small_bucket
	fx.only(deferred, "frequency.pair_rate").retry_after == 3
}

test_pair_rate_shadow_history_is_stricter if {
	# 6 sends at once 6 s ago (shadow mode lets them out past the burst of 3): they
	# borrowed 3 more tokens, the next fits 4 intervals after them, in 18 s (a bucket
	# that had refused the last 3 would let it out now)
	times := [fx.now - 6, fx.now - 6, fx.now - 6, fx.now - 6, fx.now - 6, fx.now - 6]
	deferred := frequency.defer with input as pair_sent(times)
		with data.sendgate.params.frequency.pair_rate as small_bucket
	fx.only(deferred, "frequency.pair_rate").retry_after == 18
}

test_pair_rate_cut_history_assumes_the_worst if {
	# One send every 5.9 s: each fitted a bucket of 3, and listed in full the next
	# fits too (the closest, k = 63: 6.3 s of drift, 7 s of slack). But a list of
	# 64 may have been cut, and the oldest listed may have borrowed up to 3
	# intervals: wait until 64 intervals after it, 384 s after now - 372.7.
	times := [t | some k in numbers.range(0, 63); t := (fx.now - 1) - (5.9 * k)]
	deferred := frequency.defer with input as pair_sent(times)
		with data.sendgate.params.frequency.pair_rate as small_bucket
	shorter := frequency.defer with input as pair_sent(array.slice(times, 0, 63))
		with data.sendgate.params.frequency.pair_rate as small_bucket
	fx.only(deferred, "frequency.pair_rate").retry_after == 12
	count(shorter) == 0
}

test_pair_rate_missing_history_is_none if {
	null_list := frequency.defer with input as fx.text({"recipient": {"history": {"pair_sent_at": null}}})
	no_history := frequency.defer with input as fx.text({"recipient": {"history": null}})
	no_recipient := frequency.defer with input as fx.text({"recipient": null})
	no_list := frequency.defer with input as json.remove(fx.text({}), ["recipient/history/pair_sent_at"])
	count(null_list) == 0
	count(no_history) == 0
	count(no_recipient) == 0
	count(no_list) == 0
}

test_pair_rate_status_calls_exempt if {
	inp := fx.status({"recipient": {"history": {"pair_sent_at": [fx.now, fx.now, fx.now, fx.now, fx.now, fx.now]}}})
	deferred := frequency.defer with input as inp
	count(deferred) == 0
}

test_pair_rate_applies_to_templates if {
	deferred := frequency.defer with input as fx.tmpl({"recipient": {"history": {"pair_sent_at": [fx.now - 1, fx.now - 1, fx.now - 1]}}})
		with data.sendgate.params.frequency.pair_rate as small_bucket
	fx.only(deferred, "frequency.pair_rate").retry_after == 5
}

test_pair_rate_is_not_a_deny if {
	reasons := frequency.deny with input as pair_sent([fx.now, fx.now, fx.now, fx.now, fx.now, fx.now])
	count(reasons) == 0
}

# data.json is checked when the policies load (their tests run first): a pair rate
# the gateway's history can decide exactly. It lists the sends of the last hour
# (PAIR_HISTORY_SECONDS), at most pair_history_limit of them.
gateway_history_seconds := 3600

test_pair_rate_data_fits_the_gateway_history if {
	rate := data.sendgate.params.frequency.pair_rate
	is_number(rate.burst)
	rate.burst == round(rate.burst)

	# Meta allows bursts of up to 45 (FACTS.md), and the list must hold a burst
	rate.burst >= 1
	rate.burst <= 45
	rate.burst < frequency.pair_history_limit
	is_number(rate.interval_seconds)
	rate.interval_seconds > 0

	# sends older than the hour are left out: harmless while the list's worth of intervals fits in it
	rate.interval_seconds * frequency.pair_history_limit <= gateway_history_seconds
}

meta_way := object.union(data.sendgate.params.frequency, {"count_marketing_in_open_window": false})

test_in_window_marketing_counts_by_default if {
	inp := fx.tmpl({"recipient": {"history": {"marketing_sent_at": [fx.now - 60], "marketing_outside_window_sent_at": []}}})
	fx.ids(frequency.deny) == {"frequency.marketing"} with input as inp
}

test_meta_way_leaves_in_window_marketing_out if {
	inp := fx.tmpl({"recipient": {"history": {"marketing_sent_at": [fx.now - 60], "marketing_outside_window_sent_at": []}}})
	count(frequency.deny) == 0 with input as inp with data.sendgate.params.frequency as meta_way
}

test_meta_way_counts_outside_window_marketing if {
	inp := fx.tmpl({"recipient": {"history": {"marketing_sent_at": [fx.now - 60], "marketing_outside_window_sent_at": [fx.now - 60]}}})
	fx.ids(frequency.deny) == {"frequency.marketing"} with input as inp with data.sendgate.params.frequency as meta_way
}

test_meta_way_does_not_cap_inside_an_open_window if {
	inp := fx.tmpl({"recipient": {
		"last_inbound_at": fx.now - 3600,
		"history": {"marketing_sent_at": [fx.now - 60], "marketing_outside_window_sent_at": [fx.now - 60]},
	}})
	count(frequency.deny) == 0 with input as inp with data.sendgate.params.frequency as meta_way
	fx.ids(frequency.deny) == {"frequency.marketing"} with input as inp
}

test_meta_way_cap_of_zero_without_history if {
	zero := object.union(meta_way, {"marketing_caps": [{"window_seconds": 86400, "max": 0}]})
	inp := fx.tmpl({"recipient": {"history": {"marketing_outside_window_sent_at": null}}})
	fx.ids(frequency.deny) == {"frequency.marketing"} with input as inp with data.sendgate.params.frequency as zero
}
