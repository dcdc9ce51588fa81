# Direct Send (Meta: "Send utility and authentication messages", direct-send/api-reference,
# direct-send/configure-message-ttl, updated 31 Jul 2026): a text or interactive message
# with a top-level `category` is sent as a business-initiated message of that category, for
# WABAs Meta enabled. What Meta refuses synchronously, refused here first: a category on an
# account not enabled (100), a ttl_seconds out of its category's range (100), and an
# authentication message to a business-scoped user id. Every rule requires
# message.category (main.rego routes only such calls here).
package sendgate.direct_send

import data.sendgate.lib

deny contains reason if {
	category := input.message.category
	is_string(category)
	not input.account.direct_send == true
	reason := {
		"rule": "direct_send.not_enabled",
		"message": sprintf(
			"Direct Send isn't enabled for account %s: a %s message with a category needs a WABA enabled for it (accounts[].direct_send)",
			[account_label, input.message.type],
		),
		"category": category,
	}
}

# Meta's ranges per category (data: direct_send.ttl_seconds): utility 30 s to 12 h,
# authentication 30 s to 15 min.
deny contains reason if {
	ttl := input.message.ttl_seconds
	is_number(ttl)
	category := input.message.category
	is_string(category)
	range := data.sendgate.params.direct_send.ttl_seconds[category]
	is_object(range) # tested: the register VM goes on past an undefined lookup
	not within(ttl, range)
	reason := {
		"rule": "direct_send.ttl_range",
		"message": sprintf(
			"ttl_seconds %d is outside what Meta allows for a %s message: %d to %d seconds (%s to %s)",
			[ttl, category, range.min, range.max, lib.duration(range.min), lib.duration(range.max)],
		),
		"category": category,
		"ttl_seconds": ttl,
		"min": range.min,
		"max": range.max,
	}
}

# "Authentication-category messages can't be sent to a business-scoped user ID — use `to`
# with a phone number."
deny contains reason if {
	input.message.category == "authentication"
	input.message.recipient_field == "recipient"
	reason := {
		"rule": "direct_send.authentication_bsuid",
		"message": sprintf(
			"an authentication message cannot go to a business-scoped user id (%s): address it with `to`, the user's phone number",
			[data.sendgate.lib.recipient_label],
		),
		"category": "authentication",
	}
}

account_label := sprintf("%s (%v)", [input.account.name, input.account.phone_number_id]) if {
	is_string(input.account.name)
} else := sprintf("%v", [input.account.phone_number_id])

within(ttl, range) if {
	ttl >= range.min
	ttl <= range.max
}
