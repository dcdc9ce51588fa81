# Meta's throughput per sending number: 80 messages/s by default, 20 for a
# number also used in the WhatsApp Business app, up to 1,000 after an upgrade;
# beyond it Meta answers 130429. The gateway counts every call of a number in a
# moving second, exactly and across every gateway sharing Redis, and gives the
# count as input.account.throughput (docs/input.md); this rule defers what the
# count did not admit until a place frees up. Applies to every call: read
# receipts and encrypted sends count too.
package sendgate.throughput

defer contains reason if {
	input.account.throughput.admitted == false
	t := input.account.throughput
	reason := {
		"rule": "throughput.exceeded",
		"message": sprintf(
			"phone number id %v already sent %d message(s) in the last second; its throughput is %d per second (Meta error 130429): retry in %d ms",
			[input.account.phone_number_id, t.count, t.limit, t.retry_after_ms],
		),
		"limit": t.limit,
		"count": t.count,
		"retry_after": t.retry_after,
		"retry_after_ms": t.retry_after_ms,
	}
}
