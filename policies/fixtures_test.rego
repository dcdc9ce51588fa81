# Input documents the policy tests start from (docs/input.md), and helpers.
# Each base input passes every rule; a test changes only what it is about:
#   fx.tmpl({"recipient": {"consent": null}})
# object.union merges objects recursively and replaces arrays and scalars.
package sendgate.fixtures_test

now := 1764000000

base := {
	"now": now,
	"endpoint": "messages",
	"api_version": "v23.0",
	"gateway": {"mode": "enforce", "allow_unknown_accounts": false},
	"account": {
		"phone_number_id": "106540352242922",
		"known": true,
		"waba_id": "102290129340398",
		"name": "Acme",
		"markets": null,
		"direct_send": false,
		"restrictions": [],
		"portfolio": "102290129340398",
		"messaging_limit": null,
		"throughput_mps": 80,
		"throughput": null,
		"reach": null,
		"same_content": null,
	},
	"recipient": {
		"id": "14165551234",
		"country": "CA", # a Canadian +1 number: marketing reaches it (delivery.marketing_country)
		"timezone": "America/Toronto",
		"local_time": {"hour": 12, "minute": 0, "weekday": 1},
		"consent": {
			"status": "opted_in",
			"categories": ["marketing", "utility"],
			"source": "web-form",
			"updated_at": 1763900000,
		},
		"last_inbound_at": null,
		"history": {"last_sent_at": null, "pair_sent_at": [], "marketing_sent_at": [], "marketing_outside_window_sent_at": []},
		"delivery_failures": [],
	},
	"template": null,
}

# An approved MARKETING template with a one-parameter header and a two-parameter body.
template_input := object.union(base, {
	"message": {
		"type": "template",
		"recipient": "14165551234",
		"recipient_type": "individual",
		"is_status": false,
		"recipient_field": "to",
		"context_message_id": null,
		"texts": ["Hello Jessica", "Your offer is ready"],
		"words": " hello jessica \n your offer is ready ",
		"urls": ["https://example.com/offer"],
		"links": [{"url": "https://example.com/offer", "host": "example.com", "domains": ["example.com", "com"]}],
		"limited_texts": [],
		"media": null,
		"interactive_type": null,
		"interactive": null,
		"location": null,
		"card_numbers": [],
		"ibans": [],
		"category": null,
		"ttl_seconds": null,
		"template": {
			"name": "spring_sale",
			"language": "en_US",
			"components": [
				{
					"key": "header", "type": "header", "sub_type": null, "index": null, "parameter_count": 1,
					"parameter_names": [], "parameters": [{"type": "text", "text": "Jessica"}],
				},
				{
					"key": "body", "type": "body", "sub_type": null, "index": null, "parameter_count": 2,
					"parameter_names": [], "parameters": [{"type": "text", "text": "Jessica"}, {"type": "text", "text": "20%"}],
				},
			],
		},
	},
	"template": {
		"found": true,
		"language_found": true,
		"languages": ["en_US", "pt_BR"],
		"status": "APPROVED",
		"category": "MARKETING",
		"placeholders": {"header": 1, "body": 2},
	},
})

# A free-form text inside the customer service window (the user wrote an hour ago).
text_input := object.union(base, {
	"message": {
		"type": "text",
		"recipient": "14165551234",
		"recipient_type": "individual",
		"is_status": false,
		"recipient_field": "to",
		"context_message_id": null,
		"texts": ["Your order has shipped"],
		"words": " your order has shipped ",
		"urls": [],
		"links": [],
		"limited_texts": [{"field": "text.body", "kind": "body", "length": 22}],
		"media": null,
		"interactive_type": null,
		"interactive": null,
		"location": null,
		"card_numbers": [],
		"ibans": [],
		"category": null,
		"ttl_seconds": null,
		"template": null,
	},
	"recipient": {"last_inbound_at": now - 3600},
})

# A read receipt: no recipient facts are gathered for it.
status_input := object.union(base, {
	"message": {
		"type": "status",
		"recipient": null,
		"recipient_type": "individual",
		"is_status": true,
		"context_message_id": "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQTdEQ0YxRjM2NkQ3OEY0QjhBMAA=",
		"texts": [],
		"words": "",
		"urls": [],
		"links": [],
		"limited_texts": [],
		"media": null,
		"interactive_type": null,
		"interactive": null,
		"location": null,
		"card_numbers": [],
		"ibans": [],
		"category": null,
		"ttl_seconds": null,
		"template": null,
	},
	"recipient": null,
})

# An end-to-end encrypted send: only the envelope is visible.
encrypted_input := object.union(base, {
	"endpoint": "messages_encrypted",
	"message": {
		"type": "encrypted",
		"recipient": "14165551234",
		"recipient_type": "individual",
		"is_status": false,
		"recipient_field": "to",
		"context_message_id": null,
		"texts": [],
		"words": "",
		"urls": [],
		"links": [],
		"limited_texts": [],
		"media": null,
		"interactive_type": null,
		"interactive": null,
		"location": null,
		"card_numbers": [],
		"ibans": [],
		"category": null,
		"ttl_seconds": null,
		"template": null,
	},
})

# A Direct Send utility text (no window open) from an account Meta enabled for it.
direct_send_input := object.union(text_input, {
	"account": {"direct_send": true},
	"message": {"category": "utility"},
	"recipient": {"last_inbound_at": null},
})

tmpl(patch) := object.union(template_input, patch)

direct(patch) := object.union(direct_send_input, patch)

text(patch) := object.union(text_input, patch)

status(patch) := object.union(status_input, patch)

encrypted(patch) := object.union(encrypted_input, patch)

# input.message.words and input.message.links as the gateway derives them from
# texts and urls (docs/input.md), so a test can start from what the app sent:
#   fx.text({"message": fx.content(["Visit our CASINO"], ["https://bit.ly/x"])})
content(texts, urls) := {"texts": texts, "words": words(texts), "urls": urls, "links": links(urls)}

words(texts) := "" if {
	count(texts) == 0
} else := concat("", [" ", concat(" \n ", [trim(regex.replace(lower(t), `[^\p{L}\p{N}]+`, " "), " ") | some t in texts]), " "])

links(urls) := [{"url": url, "host": h, "domains": parents(h)} |
	some url in urls
	h := host(url)
	h != ""
]

host(url) := trim_prefix(trim_right(lower(match[1]), "."), "www.") if {
	[match] := regex.find_all_string_submatch_n(`^\s*(?:[A-Za-z][A-Za-z0-9+.-]*://)?(?:[^@/?#\s]*@)?([^/?#:\s]+)`, url, 1)
}

parents(h) := [concat(".", array.slice(labels, i, count(labels))) |
	labels := split(h, ".")
	some i in numbers.range(0, count(labels) - 1)
]

# Sends to the recipient at time t that use up the pair rate's whole burst
# (data.json): the next message waits one interval after t.
full_burst(t) := [t | some _ in numbers.range(1, data.sendgate.params.frequency.pair_rate.burst)]

# The rule ids among a set of reasons.
ids(reasons) := {r.rule | some r in reasons}

# The one reason with this rule id (a test using it expects exactly one).
only(reasons, id) := r if {
	matching := [x | some x in reasons; x.rule == id]
	count(matching) == 1
	r := matching[0]
}

# A counter's fact (docs/input.md account.throughput, reach, same_content) that
# did not admit the send: `limit` already counted, a place frees up in 0.25 s.
refused_count(limit) := {
	"limit": limit,
	"window_seconds": 1,
	"admitted": false,
	"count": limit,
	"retry_after": 0.25,
	"retry_after_ms": 250,
}

# The same, admitted: the send was counted.
admitted_count(limit, n) := {
	"limit": limit,
	"window_seconds": 1,
	"admitted": true,
	"count": n,
	"retry_after": 0,
	"retry_after_ms": 0,
}
