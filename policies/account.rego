# The sending phone number: configured in the gateway, and allowed to reach the
# recipient's country (the account's configured markets; Meta itself restricts
# some WABAs by country, error 130497). These rules apply to every call,
# read receipts and encrypted sends included.
package sendgate.account

import data.sendgate.lib

deny contains reason if {
	input.account.known == false
	not input.gateway.allow_unknown_accounts == true
	reason := {
		"rule": "account.unknown",
		"message": sprintf(
			"phone number id %v is not a configured account, and the gateway does not allow unknown accounts",
			[input.account.phone_number_id],
		),
		"phone_number_id": input.account.phone_number_id,
	}
}

# Markets compare case-insensitively; an exact match (the usual case) needs no
# upper-casing of the list.
deny contains reason if {
	country := input.recipient.country
	markets := input.account.markets
	not country in markets
	is_array(markets)
	is_string(country)
	allowed := sort({upper(m) | some m in markets; is_string(m)})
	not upper(country) in allowed
	reason := {
		"rule": "account.market",
		"message": sprintf(
			"recipient %v is in %s, but account %v may only message: %s",
			[input.recipient.id, country, label(input.account), concat(", ", allowed)],
		),
		"country": country,
		"markets": allowed,
	}
}

# Meta restricted the WABA (account_update, ACCOUNT_RESTRICTION; the gateway keeps each
# restriction_type with its expiration in account.restrictions): business-initiated messages
# (templates, Direct Send) or replies to users pause while the matching restriction is in
# force, until it expires (in force until lifted when Meta gave no expiry). Meta's answer
# is 368, temporarily blocked for policy violations. Read receipts and encrypted sends (whose
# kind cannot be read) are not judged here.
deny contains reason if {
	input.account.restrictions[0] # cheap: almost every account has none
	data.sendgate.lib.business_initiated
	some restriction in input.account.restrictions
	restriction.type == "RESTRICTED_BIZ_INITIATED_MESSAGING"
	in_force(restriction)
	reason := restricted_reason(restriction, "business-initiated messages (templates, Direct Send)")
}

deny contains reason if {
	input.account.restrictions[0]
	not input.message.is_status == true
	not data.sendgate.lib.business_initiated
	not data.sendgate.lib.encrypted
	is_string(input.message.type)
	some restriction in input.account.restrictions
	restriction.type == "RESTRICTED_CUSTOMER_INITIATED_MESSAGING"
	in_force(restriction)
	reason := restricted_reason(restriction, "replies to users (free-form messages in the customer service window)")
}

# "Acme (106540352242922)", or the bare phone number id when the account has no name.
label(account) := sprintf("%s (%v)", [account.name, account.phone_number_id]) if {
	is_string(account.name)
} else := sprintf("%v", [account.phone_number_id])

# Marketing pauses while Meta flags the sending number or rates its quality low
# (params.account.pause_marketing: quality RED, status FLAGGED by default; the
# gateway keeps account.quality and account.status from Meta's webhooks), and
# while an alert paused it (account.marketing_paused, until an operator clears
# it). Only main's marketing branches consult marketing_deny: every rule here
# requires lib.marketing, tested after the cheap, rarely true, account fact.
marketing_deny contains quality_reason if {
	data.sendgate.params.account.pause_marketing.qualities[input.account.quality]
	data.sendgate.lib.marketing
}

marketing_deny contains quality_reason if {
	data.sendgate.params.account.pause_marketing.statuses[input.account.status]
	data.sendgate.lib.marketing
}

marketing_deny contains reason if {
	paused := input.account.marketing_paused
	is_object(paused)
	data.sendgate.lib.marketing
	reason := {
		"rule": "account.paused",
		"message": sprintf(
			"marketing is paused on account %v since Unix time %d (alert %s: %s); an operator clears it with DELETE /admin/v1/accounts/%v/pause",
			[label(input.account), floor(paused.since), paused.alert, paused.message, input.account.phone_number_id],
		),
		"alert": paused.alert,
		"since": paused.since,
	}
}

# One reason whichever of the two fired (a set keeps one copy).
quality_reason := {
	"rule": "account.quality",
	"message": sprintf(
		"Meta reports account %v with quality %s and status %s: marketing templates are paused until it recovers",
		[label(input.account), state_label(quality), state_label(status)],
	),
	"quality": quality,
	"status": status,
} if {
	quality := object.get(input.account, "quality", null)
	status := object.get(input.account, "status", null)
}

state_label(x) := x if {
	is_string(x)
} else := "unknown"

in_force(restriction) if not is_number(restriction.expires_at)

in_force(restriction) if restriction.expires_at > input.now

restricted_reason(restriction, what) := {
	"rule": "account.restricted",
	"message": sprintf(
		"Meta restricted WABA %v (%s) %s: %s may not be sent while it lasts",
		[input.account.waba_id, restriction.type, until_label(restriction), what],
	),
	"restriction": restriction.type,
	"expires_at": restriction.expires_at,
}

until_label(restriction) := sprintf("until Unix time %d (in %s)", [
	floor(restriction.expires_at),
	lib.duration(restriction.expires_at - input.now),
]) if {
	is_number(restriction.expires_at)
} else := "with no expiry given"
