# Sends Meta will not deliver, known before they are paid for, from Meta's own signals:
# marketing to a country where Meta does not deliver it (US numbers since 1 April 2025,
# failing with 131049), marketing to a user Meta held one back from in the last 24 h (131049,
# the per-user marketing limit), and business-initiated messages to a number that was
# undeliverable (131026) again and again. The gateway gathers the failures from Meta's
# failed-status webhooks (recipient.delivery_failures, newest first).
#
# marketing_deny: every rule requires lib.marketing (main consults it on marketing only);
# deny: every rule requires lib.business_initiated (templates and Direct Send).
package sendgate.delivery

import data.sendgate.lib

# Countries compare case-insensitively; the country comes from the number (sendgate.places:
# +1 is the US, Canada and the Caribbean, told apart by area code), null for BSUIDs.
marketing_deny contains reason if {
	country := input.recipient.country
	is_string(country)
	data.sendgate.lib.marketing
	some blocked in data.sendgate.params.delivery.marketing_blocked_countries
	upper(blocked) == upper(country)
	reason := {
		"rule": "delivery.marketing_country",
		"message": sprintf(
			"marketing to %s, a number in %s: Meta does not deliver marketing there (it fails with 131049); utility and authentication are unaffected",
			[data.sendgate.lib.recipient_label, upper(country)],
		),
		"country": upper(country),
	}
}

# Meta held back a marketing message to this user (131049) less than `seconds` ago: another
# one now fails the same way (pywa: wait at least 24 h).
marketing_deny contains reason if {
	input.recipient.delivery_failures[0] # cheap: most recipients have none
	data.sendgate.lib.marketing
	backoff := data.sendgate.params.delivery.marketing_limit_backoff
	held := [f.at |
		some f in input.recipient.delivery_failures
		f.code == backoff.code
		f.at > input.now - backoff.seconds
	]
	count(held) > 0
	last := max(held)
	wait := lib.whole_seconds((last + backoff.seconds) - input.now)
	reason := {
		"rule": "delivery.marketing_limited",
		"message": sprintf(
			"Meta held back a marketing message to %s %s ago (error %d, its per-user marketing limit); no marketing to them for %s after that (another %s)",
			[data.sendgate.lib.recipient_label, lib.duration(input.now - last), backoff.code, lib.duration(backoff.seconds), lib.duration(wait)],
		),
		"failed_at": last,
		"window_seconds": backoff.seconds,
	}
}

# A number Meta found undeliverable (131026: not on WhatsApp, an old app, terms not accepted,
# the business blocked) `count` times in `seconds` is held: business-initiated messages to it
# only cost failed sends and tell Meta the list is stale. Failures from before the user's last
# message do not count (they wrote since: the number is reachable), and replies are not held:
# a free-form message can only go inside a window the user opened.
deny contains reason if {
	input.recipient.delivery_failures[0] # cheap: most recipients have none
	data.sendgate.lib.business_initiated
	hold := data.sendgate.params.delivery.undeliverable_hold
	since := max([input.now - hold.seconds, last_inbound])
	failures := [f.at |
		some f in input.recipient.delivery_failures
		f.code == hold.code
		f.at > since
	]
	count(failures) >= hold.count
	reason := {
		"rule": "delivery.undeliverable",
		"message": sprintf(
			"%s was undeliverable %d time(s) in the last %s (Meta error %d; the hold is at %d): business-initiated messages to it are held",
			[data.sendgate.lib.recipient_label, count(failures), lib.duration(hold.seconds), hold.code, hold.count],
		),
		"count": count(failures),
		"limit": hold.count,
		"window_seconds": hold.seconds,
		"last_failed_at": max(failures),
	}
}

default last_inbound := 0

last_inbound := input.recipient.last_inbound_at if is_number(input.recipient.last_inbound_at)
