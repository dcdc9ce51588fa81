package sendgate.pacing_test

import data.sendgate.fixtures_test as fx
import data.sendgate.pacing

paced(fact) := object.union(fact, {"window_seconds": 60, "hash": "0123456789abcdef", "category": "MARKETING", "threshold": "category"})

test_admitted_passes if {
	count(pacing.defer) == 0 with input as fx.tmpl({"account": {"same_content": paced(fx.admitted_count(100, 100))}})
}

test_not_paced_passes if {
	count(pacing.defer) == 0 with input as fx.tmpl({"account": {"same_content": null}})
}

test_refused_defers if {
	inp := fx.tmpl({"account": {"same_content": paced(fx.refused_count(100))}})
	r := fx.only(pacing.defer, "pacing.same_content") with input as inp
	r.limit == 100
	r.count == 100
	r.hash == "0123456789abcdef"
	r.category == "MARKETING"
	r.threshold == "category"
	r.window_seconds == 60
	r.retry_after == 0.25
	contains(r.message, "the same marketing content (0123456789abcdef) already went to 100 recipient(s)")
	contains(r.message, "in the last 60 s; the category threshold is 100: retry in 250 ms")
}

test_status_and_encrypted_not_paced if {
	fact := {"account": {"same_content": paced(fx.refused_count(5))}}
	count(pacing.defer) == 0 with input as fx.status(fact)
	count(pacing.defer) == 0 with input as fx.encrypted(fact)
	count(pacing.defer) == 0 with input as fx.text({"message": {"type": "encrypted"}, "account": {"same_content": paced(fx.refused_count(5))}})
}

# The gateway reads these thresholds before deciding and ignores one it cannot
# use: a data.json with such a threshold fails here, so a reload refuses it.
valid_threshold(t) if {
	is_number(t.max_recipients)
	t.max_recipients == floor(t.max_recipients)
	t.max_recipients >= 1
	is_number(t.window_seconds)
	t.window_seconds > 0
}

test_data_thresholds_are_usable if {
	options := data.sendgate.params.pacing.same_content
	valid_threshold(options.low_quality)
	thresholds := array.concat([t | some t in options.categories], [t | some t in options.vetted])
	every t in thresholds {
		valid_threshold(t)
	}
	every q in options.low_quality.qualities {
		q == upper(q)
	}
}

test_an_unusable_threshold_is_refused if {
	not valid_threshold({"max_recipients": 0, "window_seconds": 60})
	not valid_threshold({"max_recipients": 1.5, "window_seconds": 60})
	not valid_threshold({"max_recipients": 10, "window_seconds": 0})
	not valid_threshold({"max_recipients": "10", "window_seconds": 60})
}
