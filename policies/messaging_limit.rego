# Meta's messaging limit: the unique users a business portfolio reaches with
# business-initiated messages (templates, Direct Send) outside an open
# customer-service window in a moving 24 hours: 250, 2,000, 10,000, 100,000 or
# unlimited, shared by every number of the portfolio (FACTS.md §12). Meta has
# no send-time error for it (sendgate's own code, 770700); messages past it
# are not delivered. The gateway counts the portfolio's distinct recipients,
# exactly and across every gateway sharing Redis, against the limit Meta
# reported (business_capability_update) or the configured one, and gives the
# count as input.account.reach (null when not counted: inside a window, not
# business-initiated, no known limit, unlimited).
package sendgate.messaging_limit

import data.sendgate.lib

deny contains reason if {
	input.account.reach.admitted == false
	input.message.type in {"template", "text", "interactive"}
	not input.message.is_status == true
	input.endpoint != "messages_encrypted"
	r := input.account.reach
	reason := {
		"rule": "messaging_limit.reached",
		"message": sprintf(
			"portfolio %v already reached %d unique user(s) outside a customer service window in the last 24h, its messaging limit; %s is a new one, reachable in %s",
			[input.account.portfolio, r.count, data.sendgate.lib.recipient_label, lib.duration(r.retry_after)],
		),
		"portfolio": input.account.portfolio,
		"limit": r.limit,
		"count": r.count,
		"window_seconds": r.window_seconds,
		"next_at": lib.whole_seconds(input.now + r.retry_after),
	}
}
