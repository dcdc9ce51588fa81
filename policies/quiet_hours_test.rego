package sendgate.quiet_hours_test

import data.sendgate.fixtures_test as fx
import data.sendgate.quiet_hours

at(hour, minute) := fx.tmpl({"recipient": {"local_time": {"hour": hour, "minute": minute, "weekday": 2}}})

test_daytime_passes if {
	deferred := quiet_hours.defer with input as fx.template_input
	count(deferred) == 0
}

test_defers_at_2100_inclusive if {
	deferred := quiet_hours.defer with input as at(21, 0)
	r := fx.only(deferred, "quiet_hours")
	r.retry_after == 39600
	r.local_time == "21:00"
	r.start == "21:00"
	r.end == "08:00"
	r.timezone == "America/Toronto"
	contains(r.message, "21:00")
}

test_passes_at_2059 if {
	deferred := quiet_hours.defer with input as at(20, 59)
	count(deferred) == 0
}

test_defers_at_0759 if {
	deferred := quiet_hours.defer with input as at(7, 59)
	fx.only(deferred, "quiet_hours").retry_after == 60
}

test_passes_at_0800_exclusive if {
	deferred := quiet_hours.defer with input as at(8, 0)
	count(deferred) == 0
}

test_defers_at_midnight if {
	deferred := quiet_hours.defer with input as at(0, 0)
	fx.only(deferred, "quiet_hours").retry_after == 28800
}

test_defers_at_2205 if {
	deferred := quiet_hours.defer with input as at(22, 5)
	r := fx.only(deferred, "quiet_hours")
	r.retry_after == 35700
	contains(r.message, "9h 55m")
}

test_utility_not_deferred if {
	inp := object.union(at(23, 0), {"template": {"category": "UTILITY"}})
	deferred := quiet_hours.defer with input as inp
	count(deferred) == 0
}

test_free_form_not_deferred if {
	inp := fx.text({"recipient": {"local_time": {"hour": 23, "minute": 0, "weekday": 2}}})
	deferred := quiet_hours.defer with input as inp
	count(deferred) == 0
}

test_marketing_endpoint_deferred if {
	inp := object.union(at(23, 0), {"endpoint": "marketing_messages", "template": {"category": null}})
	deferred := quiet_hours.defer with input as inp
	fx.only(deferred, "quiet_hours").retry_after == 32400
}

test_unknown_timezone_warns if {
	inp := fx.tmpl({"recipient": {"timezone": null, "local_time": null}})
	warned := quiet_hours.warn with input as inp
	deferred := quiet_hours.defer with input as inp
	fx.ids(warned) == {"quiet_hours.unknown_timezone"}
	count(deferred) == 0
}

test_known_timezone_no_warning if {
	warned := quiet_hours.warn with input as fx.template_input
	count(warned) == 0
}

test_unknown_timezone_no_warning_for_utility if {
	inp := fx.tmpl({"recipient": {"timezone": null, "local_time": null}, "template": {"category": "UTILITY"}})
	warned := quiet_hours.warn with input as inp
	count(warned) == 0
}

test_range_without_wrap_from_data if {
	range := {"start": {"hour": 12, "minute": 0}, "end": {"hour": 14, "minute": 30}}
	inside := quiet_hours.defer with input as at(13, 0) with data.sendgate.params.quiet_hours as range
	before := quiet_hours.defer with input as at(11, 59) with data.sendgate.params.quiet_hours as range
	after := quiet_hours.defer with input as at(14, 30) with data.sendgate.params.quiet_hours as range
	fx.only(inside, "quiet_hours").retry_after == 5400
	count(before) == 0
	count(after) == 0
}

test_empty_range_disables if {
	range := {"start": {"hour": 21, "minute": 0}, "end": {"hour": 21, "minute": 0}}
	deferred := quiet_hours.defer with input as at(21, 0) with data.sendgate.params.quiet_hours as range
	count(deferred) == 0
}

test_unknown_timezone_warns_without_recipient_facts if {
	warned := quiet_hours.warn with input as fx.tmpl({"recipient": null})
	fx.ids(warned) == {"quiet_hours.unknown_timezone"}
}
