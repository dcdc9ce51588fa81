# What the message says and links to: terms from WhatsApp's Commerce Policy
# (prohibited goods and services), link shorteners (they hide the destination;
# an optional allowlist pins links to the business's own domains), Meta's length
# caps (text body 4096, caption 1024), and end-to-end encrypted sends, whose
# content the gateway cannot inspect.
package sendgate.content

import data.sendgate.lib

params := data.sendgate.params.content

# Word matching. Lower-case, every run of characters other than letters, digits
# and the newline as one space: "Buy-Followers now!" -> "buy followers now ".
# A term matches on word boundaries when " <term> " is a substring of
# " <text> ". The texts and the terms are joined with newlines and normalized in
# one regex call (compiling the pattern dominates evaluation time on regorus);
# newlines inside a text or term become spaces first, so each line is one text
# or one term, and a term cannot match across two texts.
words(s) := regex.replace(lower(s), `[^\p{L}\p{N}\n]+`, " ")

one_line(s) := strings.replace_n({"\n": " ", "\r": " "}, s)

text_lines := [one_line(t) | some t in lib.items(input.message.texts); is_string(t)]

banned_terms := [t | some t in lib.items(params.banned_terms); is_string(t)]

normalized := split(words(concat("\n", array.concat(text_lines, [one_line(t) | some t in banned_terms]))), "\n")

# Every text, as " text one \n text two "; undefined when there is none.
text_blob := concat("", [" ", concat(" \n ", array.slice(normalized, 0, count(text_lines))), " "]) if count(text_lines) > 0

# Index-aligned with banned_terms: " buy followers ". A term with no letters or
# digits becomes "  " and never matches.
needles := [concat("", [" ", trim(w, " "), " "]) | some w in array.slice(normalized, count(text_lines), count(normalized))]

deny contains reason if {
	blob := text_blob
	some i, needle in needles
	needle != "  "
	contains(blob, needle)
	term := banned_terms[i]
	reason := {
		"rule": "content.banned_term",
		"message": sprintf(
			"message text contains %q, a term on the banned list (goods or services WhatsApp's Commerce Policy prohibits)",
			[term],
		),
		"term": term,
	}
}

# scheme://user@HOST:port/...; the scheme, credentials and port are optional.
host_pattern := `^\s*(?:[A-Za-z][A-Za-z0-9+.-]*://)?(?:[^@/?#\s]*@)?([^/?#:\s]+)`

# The URL's host, lower-cased, without port, trailing dot or leading "www.".
host(url) := trim_prefix(trim_right(lower(match[1]), "."), "www.") if {
	[match] := regex.find_all_string_submatch_n(host_pattern, url, 1)
}

domain(d) := trim_prefix(lower(d), "www.")

# The host and every parent domain: "go.bit.ly" -> {"go.bit.ly", "bit.ly", "ly"}.
# A host is within a listed domain when the two sets meet.
suffixes(h) := {concat(".", array.slice(labels, i, count(labels))) |
	labels := split(h, ".")
	some i in numbers.range(0, count(labels) - 1)
}

links contains {"url": url, "host": h, "domains": suffixes(h)} if {
	some url in lib.items(input.message.urls)
	is_string(url)
	h := host(url)
}

shorteners := {domain(d) | some d in lib.items(params.shortener_domains); is_string(d)}

# Empty (the default): links may go anywhere but to a shortener.
allowed_domains := {domain(d) | some d in lib.items(params.allowed_domains); is_string(d)}

deny contains reason if {
	some link in links
	some d in (link.domains & shorteners)
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

deny contains reason if {
	count(allowed_domains) > 0
	some link in links
	count(link.domains & allowed_domains) == 0
	allowed := sort(allowed_domains)
	reason := {
		"rule": "content.url_domain",
		"message": sprintf(
			"link %s points to %s, which is not on the allowed domain list (%s)",
			[link.url, link.host, concat(", ", allowed)],
		),
		"url": link.url,
		"host": link.host,
		"allowed": allowed,
	}
}

deny contains reason if {
	some entry in lib.items(input.message.limited_texts)
	limit := params.length_limits[entry.kind]
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

deny contains reason if {
	lib.encrypted
	reason := {
		"rule": "content.encrypted",
		"message": sprintf(
			"message to %s is end-to-end encrypted (%s endpoint); the gateway cannot inspect its content, so it is not forwarded",
			[lib.recipient_label, input.endpoint],
		),
		"endpoint": input.endpoint,
	}
}
