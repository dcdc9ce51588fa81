# How often one recipient hears from the business: our own marketing caps (Meta
# enforces an adaptive per-user marketing limit, error 131049, and charges per
# delivered template) and Meta's pair rate limit (about 1 message per 6 s to the
# same user, bursts allowed, error 131056), which is a wait, not a refusal.
package sendgate.frequency

import data.sendgate.lib

# Marketing templates to this recipient from the same WABA (newest first); a
# cap counts those strictly newer than `now - window_seconds`. A cap can only be
# reached with at least `max` sends on record: most recipients have fewer, and
# then no window needs counting.
deny contains reason if {
	data.sendgate.lib.marketing
	is_array(marketing_history)
	not exempt_in_window
	total := count(marketing_history)
	some cap in data.sendgate.params.frequency.marketing_caps
	total >= cap.max
	sent := count([t | some t in marketing_history; t > input.now - cap.window_seconds])
	sent >= cap.max
	reason := marketing_reason(cap, sent)
}

# No history on record counts as none sent: only a cap of 0 is reached.
deny contains reason if {
	data.sendgate.lib.marketing
	not is_array(object.get(input, ["recipient", "history", history_key], null))
	not exempt_in_window
	some cap in data.sendgate.params.frequency.marketing_caps
	cap.max <= 0
	reason := marketing_reason(cap, 0)
}

# Which marketing the caps count (params.frequency.count_marketing_in_open_window): every
# marketing send (true, the default), or, as Meta's per-user marketing limit counts, only
# those not sent inside a customer service window the user opened (false; FACTS.md §12).
default history_key := "marketing_sent_at"

history_key := "marketing_outside_window_sent_at" if {
	data.sendgate.params.frequency.count_marketing_in_open_window == false
}

marketing_history := input.recipient.history[history_key]

# Counted Meta's way, a marketing message inside a window the user opened is not capped
# either: Meta's limit leaves it out.
exempt_in_window if {
	data.sendgate.params.frequency.count_marketing_in_open_window == false
	last := input.recipient.last_inbound_at
	is_number(last)
	input.now - last < data.sendgate.params.window.seconds
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

# The pair rate, as Meta applies it: a token bucket of `burst` messages from one
# number to one user, refilled one per `interval_seconds` (GCRA). With the past
# sends t_0 >= t_1 >= ... (newest first), a new message fits iff for every
# k >= burst - 1:  now - t_k >= (k + 2 - burst) * interval, i.e. the k + 1 sends
# since t_k plus this one fit in the burst plus what refilled since t_k. Rego has
# no fold; this closed form equals the bucket's bookkeeping when the past sends
# fitted it, and is stricter (the safe side) when they did not (shadow mode).
# retry_after: when the last such inequality holds, in whole seconds rounded up.
# Cost: most recipients have fewer sends listed than the burst, and the first
# two lines stop them. On regorus a further rule body or a function call costs more
# than this arithmetic, so everything is inline but the reason, built only when
# the rule fires. tests/test_pair_rate.py checks the whole against a bucket.
defer contains reason if {
	input.recipient.history.pair_sent_at[0] # cheaper than the next line, which reads data
	input.recipient.history.pair_sent_at[data.sendgate.params.frequency.pair_rate.burst - 1]
	not input.message.is_status == true
	sent := input.recipient.history.pair_sent_at
	is_array(sent)
	rate := data.sendgate.params.frequency.pair_rate
	n := count(sent)

	# No inequality's factor exceeds n (the cut bound's is 64 <= n): if the burst-th
	# newest send is older than n intervals, every send meets its own (a chatty
	# recipient whose sends are spread out stops here).
	sent[rate.burst - 1] > input.now - (n * rate.interval_seconds)

	# t_k (k >= burst - 1) is element j = k - burst + 1 of the slice: its factor is j + 1.
	# No such factor exceeds n + 1 - burst, so a send older than `cutoff` meets its own.
	cutoff := input.now - (((n + 1) - rate.burst) * rate.interval_seconds)
	waits := array.concat(
		[w |
			some j, t in array.slice(sent, rate.burst - 1, n)
			t > cutoff
			w := (t + ((j + 1) * rate.interval_seconds)) - input.now
			w > 0
		],
		# a list of pair_history_limit may have been cut (below); shorter ones slice to []
		[w |
			some t in array.slice(sent, pair_history_limit - 1, pair_history_limit)
			w := (t + (pair_history_limit * rate.interval_seconds)) - input.now
			w > 0
		],
	)
	count(waits) > 0
	reason := pair_reason(sent, rate, max([1, ceil(max(waits))]))
}

pair_reason(sent, rate, wait) := {
	"rule": "frequency.pair_rate",
	"message": sprintf(
		"%d message(s) to %s in the last %s; the pair rate is a burst of %d, then one per %v s (Meta error 131056): retry in %d s",
		[recent, data.sendgate.lib.recipient_label, lib.duration(window), rate.burst, rate.interval_seconds, wait],
	),
	"burst": rate.burst,
	"interval_seconds": rate.interval_seconds,
	"sent_in_window": recent,
	"window_seconds": window,
	"retry_after": wait,
} if {
	window := rate.burst * rate.interval_seconds # how long an empty bucket takes to refill
	recent := count([t | some t in sent; t > input.now - window])
}

# The gateway lists at most this many sends (docs/input.md; PAIR_HISTORY_LIMIT in
# sendgate/state/base.py), so a list this long may have been cut. The sends cut
# off fitted the bucket (this rule let them out), so right after the 64th one at
# most `burst` intervals were borrowed: the inequalities for it and everything
# older hold once now - t_63 >= 64 * interval, whatever the burst. Assuming the
# worst of them costs at most burst - 1 intervals of waiting, only past 64 sends
# in the hour. (Sends older than the hour are left out too: harmless while 64
# intervals fit in it, which frequency_test checks of data.json.)
pair_history_limit := 64
