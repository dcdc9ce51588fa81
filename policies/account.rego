# The sending phone number: configured in the gateway, and allowed to reach the
# recipient's country (the account's configured markets; Meta itself restricts
# some WABAs by country, error 130497). These rules apply to every call,
# read receipts and encrypted sends included.
package sendgate.account

import data.sendgate.lib

allow_unknown if input.gateway.allow_unknown_accounts == true

markets := {upper(m) | some m in lib.items(input.account.markets); is_string(m)}

deny contains reason if {
	input.account.known == false
	not allow_unknown
	reason := {
		"rule": "account.unknown",
		"message": sprintf(
			"phone number id %v is not a configured account, and the gateway does not allow unknown accounts",
			[input.account.phone_number_id],
		),
		"phone_number_id": input.account.phone_number_id,
	}
}

deny contains reason if {
	is_array(input.account.markets)
	is_string(input.recipient.country)
	not upper(input.recipient.country) in markets
	allowed := sort(markets)
	reason := {
		"rule": "account.market",
		"message": sprintf(
			"recipient %v is in %s, but account %v may only message: %s",
			[input.recipient.id, input.recipient.country, account_label, concat(", ", allowed)],
		),
		"country": input.recipient.country,
		"markets": allowed,
	}
}

account_label := sprintf("%s (%v)", [input.account.name, input.account.phone_number_id]) if {
	is_string(input.account.name)
} else := sprintf("%v", [input.account.phone_number_id])
