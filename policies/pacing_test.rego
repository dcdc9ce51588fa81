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
