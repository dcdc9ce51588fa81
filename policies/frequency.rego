# How often one recipient hears from the business: our own marketing caps (Meta
# enforces an adaptive per-user marketing limit, error 131049, and charges per
# delivered template) and Meta's pair rate limit (about 1 message per 6 s to the
# same user, error 131056), which is a wait, not a refusal.
package sendgate.frequency

import data.sendgate.lib

params := data.sendgate.params.frequency

# Marketing templates to this recipient from the same WABA (newest first); a
# cap counts those strictly newer than `now - window_seconds`. A cap can only be
# reached with at least `max` sends on record: most recipients have fewer, and
# then no window needs counting.
deny contains reason if {
	data.sendgate.lib.marketing
	history := input.recipient.history.marketing_sent_at
	is_array(history)
	total := count(history)
	some cap in data.sendgate.params.frequency.marketing_caps
	total >= cap.max
	sent := count([t | some t in history; t > input.now - cap.window_seconds])
	sent >= cap.max
	reason := marketing_reason(cap, sent)
}

# No history on record counts as none sent: only a cap of 0 is reached.
deny contains reason if {
	data.sendgate.lib.marketing
	not is_array(object.get(input, ["recipient", "history", "marketing_sent_at"], null))
	some cap in data.sendgate.params.frequency.marketing_caps
	cap.max <= 0
	reason := marketing_reason(cap, 0)
}

marketing_reason(cap, sent) := {
	"rule": "frequency.marketing",
	"message": sprintf(
		"recipient %s already received %d marketing template(s) in the last %s; the cap is %d per %s",
		[data.sendgate.lib.recipient_label, sent, lib.duration(cap.window_seconds), cap.max, lib.duration(cap.window_seconds)],
	),
	"category": data.sendgate.lib.category_label,
	"count": sent,
	"limit": cap.max,
	"window_seconds": cap.window_seconds,
}

defer contains reason if {
	last_sent_at := input.recipient.history.last_sent_at
	is_number(last_sent_at)
	elapsed := input.now - last_sent_at
	elapsed < data.sendgate.params.frequency.pair_min_interval_seconds
	not input.message.is_status == true
	wait := max({1, ceil(params.pair_min_interval_seconds - elapsed)})
	reason := {
		"rule": "frequency.pair_rate",
		"message": sprintf(
			"last message to %s went out %s ago; Meta allows about one message per %v s to the same user (error 131056), retry in %d s",
			[data.sendgate.lib.recipient_label, lib.duration(elapsed), params.pair_min_interval_seconds, wait],
		),
		"elapsed": lib.whole_seconds(elapsed),
		"last_sent_at": last_sent_at,
		"min_interval": params.pair_min_interval_seconds,
		"retry_after": wait,
	}
}
