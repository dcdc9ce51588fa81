# The sending phone number: configured in the gateway, and allowed to reach the
# recipient's country (the account's configured markets; Meta itself restricts
# some WABAs by country, error 130497). These rules apply to every call,
# read receipts and encrypted sends included.
package sendgate.account

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
			[input.recipient.id, country, account_label(input.account), concat(", ", allowed)],
		),
		"country": country,
		"markets": allowed,
	}
}

account_label(account) := sprintf("%s (%v)", [account.name, account.phone_number_id]) if {
	is_string(account.name)
} else := sprintf("%v", [account.phone_number_id])
