# How often one recipient hears from the business: our own marketing caps (Meta
# enforces an adaptive per-user marketing limit, error 131049, and charges per
# delivered template) and Meta's pair rate limit (about 1 message per 6 s to the
# same user, error 131056), which is a wait, not a refusal.
package sendgate.frequency

import data.sendgate.lib

params := data.sendgate.params.frequency

# Marketing templates to this recipient from the same WABA, newest first.
marketing_sent_at := input.recipient.history.marketing_sent_at if {
	is_array(input.recipient.history.marketing_sent_at)
}

default marketing_sent_at := []

last_sent_at := input.recipient.history.last_sent_at if is_number(input.recipient.history.last_sent_at)

# Marketing sends strictly newer than `now - window_seconds`.
sent_within(window_seconds) := count([t |
	some t in marketing_sent_at
	t > input.now - window_seconds
])

deny contains reason if {
	lib.marketing
	some cap in lib.items(params.marketing_caps)
	sent := sent_within(cap.window_seconds)
	sent >= cap.max
	reason := {
		"rule": "frequency.marketing",
		"message": sprintf(
			"recipient %s already received %d marketing template(s) in the last %s; the cap is %d per %s",
			[lib.recipient_label, sent, lib.duration(cap.window_seconds), cap.max, lib.duration(cap.window_seconds)],
		),
		"category": lib.category_label,
		"count": sent,
		"limit": cap.max,
		"window_seconds": cap.window_seconds,
	}
}

defer contains reason if {
	not lib.is_status
	elapsed := input.now - last_sent_at
	elapsed < params.pair_min_interval_seconds
	wait := max({1, ceil(params.pair_min_interval_seconds - elapsed)})
	reason := {
		"rule": "frequency.pair_rate",
		"message": sprintf(
			"last message to %s went out %v s ago; Meta allows about one message per %v s to the same user (error 131056), retry in %d s",
			[lib.recipient_label, lib.ms(elapsed), params.pair_min_interval_seconds, wait],
		),
		"elapsed": lib.ms(elapsed),
		"min_interval": params.pair_min_interval_seconds,
		"retry_after": wait,
	}
}
