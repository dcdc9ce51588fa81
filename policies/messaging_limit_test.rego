package sendgate.messaging_limit_test

import data.sendgate.fixtures_test as fx
import data.sendgate.messaging_limit

refused := object.union(fx.refused_count(250), {"window_seconds": 86400, "retry_after": 3600.5})

test_admitted_passes if {
	count(messaging_limit.deny) == 0 with input as fx.tmpl({"account": {"reach": fx.admitted_count(250, 1)}})
}

test_not_counted_passes if {
	count(messaging_limit.deny) == 0 with input as fx.tmpl({"account": {"reach": null}})
}

test_refused_template_denied if {
	inp := fx.tmpl({"account": {"portfolio": "acme-portfolio", "reach": refused}})
	r := fx.only(messaging_limit.deny, "messaging_limit.reached") with input as inp
	r.portfolio == "acme-portfolio"
	r.limit == 250
	r.count == 250
	r.window_seconds == 86400
	r.next_at == fx.now + 3600
	contains(r.message, "in 1h")
}

test_status_and_encrypted_not_denied if {
	count(messaging_limit.deny) == 0 with input as fx.status({"account": {"reach": refused}})
	count(messaging_limit.deny) == 0 with input as fx.encrypted({"account": {"reach": refused}})
	count(messaging_limit.deny) == 0 with input as fx.text({"message": {"type": "image"}, "account": {"reach": refused}})
}
