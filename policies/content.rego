# What the message says and links to: a banned-term list, the goods and services
# WhatsApp's Commerce and Business Messaging policies prohibit (by category),
# full payment card numbers and IBANs, link shorteners (they hide the destination;
# an optional allowlist pins links to the business's own domains), Meta's length
# caps (text body 4096, caption 1024), and end-to-end encrypted sends, whose
# content the gateway cannot inspect.
#
# These rules run on every message, so each one starts with its cheapest, most
# selective test and builds its reason only when it fires. Lib rules are
# referenced by their full path (data.sendgate.lib.x): regorus evaluates every
# rule of a package reached through an import alias.
package sendgate.content

# Word matching. The gateway gives input.message.words: the texts lower-cased,
# every run of characters other than letters and digits one space, one text per
# line, padded: " buy followers now \n hi ". A term matches on word boundaries
# when " <term> " is a substring; a term cannot match across two texts.
# Terms in data are written normalized the same way (lower case, letters and
# digits, single spaces: see normalized_term, checked by content_test).

# A normalized term: "buy followers", not "Buy-Followers" or " casino".
normalized_term(t) if {
	is_string(t)
	lower(t) == t
	regex.match(`^[\p{L}\p{N}]+( [\p{L}\p{N}]+)*$`, t)
}

# A normalized domain: "bit.ly", not "Bit.ly", "www.bit.ly", "bit.ly." or "https://bit.ly".
normalized_domain(d) if {
	is_string(d)
	lower(d) == d
	not startswith(d, "www.")
	regex.match(`^[^./:@\s]+(\.[^./:@\s]+)*$`, d)
}

deny contains reason if {
	words := input.message.words
	words != ""

	# One regex over all the terms says whether any occurs at all (most texts
	# have none); a substring test per term then finds which. The pattern is
	# safe because the terms are normalized: letters, digits and spaces
	# (content_test also runs it over every term in data, so a list regorus
	# could not compile fails the tests when the gateway loads the policies).
	terms := data.sendgate.params.content.banned_terms
	regex.match(concat("", [" (?:", concat("|", terms), ") "]), words)
	some term in terms
	term != ""
	contains(words, concat("", [" ", term, " "]))
	reason := {
		"rule": "content.banned_term",
		"message": sprintf(
			"message text contains %q, a term on the banned list",
			[term],
		),
		"term": term,
	}
}

# Goods and services WhatsApp's Commerce Policy and Business Messaging Policy
# prohibit, by category: data.sendgate.params.content.prohibited_commerce maps
# each term (normalized like banned_terms) to its category, {"vodka": "alcohol"}.
# Keyed by term so the one regex over every term is built with object.keys, a
# single builtin call (a list per category cost ~50 us a message on regorus);
# a substring test per term then names the term and its category.
deny contains reason if {
	words := input.message.words
	words != ""
	terms := data.sendgate.params.content.prohibited_commerce
	regex.match(concat("", [" (?:", concat("|", object.keys(terms)), ") "]), words)
	some term, category in terms
	term != ""
	contains(words, concat("", [" ", term, " "]))
	reason := {
		"rule": "content.prohibited_commerce",
		"message": sprintf(
			"message text contains %q: %s is a category WhatsApp's Commerce and Business Messaging policies prohibit buying, selling or promoting",
			[term, replace(category, "_", " ")],
		),
		"category": category,
		"term": term,
	}
}

# Payment card numbers and IBANs in the texts. The gateway finds them (Luhn and
# mod-97 checked) and gives only their masked form: input.message.card_numbers
# [{"masked", "last4", "length", "network"}] and input.message.ibans
# [{"masked", "country", "last4"}]. A number that passes Luhn but has no card
# network's prefix and length (most phone and order numbers that happen to pass:
# 1 in 10 do) counts only when card_numbers.networks_only is false.
deny contains reason if {
	some card in input.message.card_numbers
	counted_card(card)
	reason := {
		"rule": "content.card_number",
		"message": sprintf(
			"message text contains a full payment card number (%s, ending %s); WhatsApp's policy forbids sharing one: show the last 4 digits at most",
			[network_label(card), card.last4],
		),
		"masked": card.masked,
		"network": card.network,
		"last4": card.last4,
	}
}

deny contains reason if {
	some iban in input.message.ibans
	reason := {
		"rule": "content.iban",
		"message": sprintf(
			"message text contains a full IBAN (%s, ending %s); WhatsApp's policy forbids sharing account numbers: show the last 4 at most",
			[iban.country, iban.last4],
		),
		"masked": iban.masked,
		"country": iban.country,
		"last4": iban.last4,
	}
}

# Links. The gateway gives input.message.links: each URL with its host (lower
# case, no credentials, port, trailing dot or "www.") and the host's parent
# domains, "go.bit.ly" -> ["go.bit.ly", "bit.ly", "ly"]. The shortener list and
# the allowlist are objects keyed by normalized domain ({"bit.ly": true}), so a
# link is checked with one object.filter by its domains, never a loop over the
# lists. Links are rare: every rule iterates over them first.

deny contains reason if {
	some link in input.message.links
	some d, listed in object.filter(data.sendgate.params.content.shortener_domains, link.domains)
	listed == true
	reason := {
		"rule": "content.url_domain",
		"message": sprintf(
			"link %s goes through the URL shortener %s, which hides its real destination; link to the destination directly",
			[link.url, d],
		),
		"url": link.url,
		"host": link.host,
		"domain": d,
	}
}

# Empty (the default): links may go anywhere but to a shortener.
deny contains reason if {
	some link in input.message.links
	allowed := data.sendgate.params.content.allowed_domains
	count(allowed) > 0
	not true in object.filter(allowed, link.domains)
	listed := sort(object.keys(allowed))
	reason := {
		"rule": "content.url_domain",
		"message": sprintf(
			"link %s points to %s, which is not on the allowed domain list (%s)",
			[link.url, link.host, concat(", ", listed)],
		),
		"url": link.url,
		"host": link.host,
		"allowed": listed,
	}
}

deny contains reason if {
	some entry in input.message.limited_texts
	limit := data.sendgate.params.content.length_limits[entry.kind]
	entry.length > limit
	reason := {
		"rule": "content.length",
		"message": sprintf(
			"%s is %d characters long; WhatsApp allows at most %d characters in a %s",
			[entry.field, entry.length, limit, entry.kind],
		),
		"field": entry.field,
		"kind": entry.kind,
		"length": entry.length,
		"limit": limit,
	}
}

# lib.encrypted, spelled out: two cheap tests instead of a rule evaluation.
deny contains encrypted_reason if input.endpoint == "messages_encrypted"

deny contains encrypted_reason if input.message.type == "encrypted"

encrypted_reason := {
	"rule": "content.encrypted",
	"message": sprintf(
		"message to %s is end-to-end encrypted (%s endpoint); the gateway cannot inspect its content, so it is not forwarded",
		[data.sendgate.lib.recipient_label, input.endpoint],
	),
	"endpoint": input.endpoint,
}

# A card number counts when it has a card network, or when every Luhn-valid number does.
counted_card(card) if is_string(card.network)

counted_card(card) if {
	card.network == null
	data.sendgate.params.content.card_numbers.networks_only == false
}

network_label(card) := card.network if is_string(card.network)

else := "no known card network"
