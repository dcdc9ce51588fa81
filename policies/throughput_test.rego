package sendgate.throughput_test

import data.sendgate.fixtures_test as fx
import data.sendgate.throughput

test_admitted_passes if {
	count(throughput.defer) == 0 with input as fx.text({"account": {"throughput": fx.admitted_count(80, 80)}})
}

test_not_counted_passes if {
	count(throughput.defer) == 0 with input as fx.text({"account": {"throughput": null}})
}

test_refused_defers_with_the_exact_wait if {
	r := fx.only(throughput.defer, "throughput.exceeded") with input as fx.text({"account": {"throughput": fx.refused_count(80)}})
	r.limit == 80
	r.count == 80
	r.retry_after == 0.25
	r.retry_after_ms == 250
	contains(r.message, "retry in 250 ms")
	contains(r.message, "130429")
}
