# Template checks against the WABA catalog, before Meta rejects the send:
# missing or not approved (132001), paused (132015), disabled (132016),
# parameter count mismatch (132000).
package sendgate.template

import data.sendgate.lib

name := input.message.template.name

language := input.message.template.language

found if input.template.found == true

# Found in the language the app asked for: only then do status and parameters mean anything.
language_found if {
	found
	input.template.language_found == true
}

status := input.template.status

sendable_status := "APPROVED"

paused_status := "PAUSED"

# What the app sent: parameter count per component key (absent = 0).
sent_components := [c | some c in lib.items(input.message.template.components)]

sent_count(key) := sum([c.parameter_count | some c in sent_components; c.key == key])

# What the catalog expects, per component key.
placeholders := input.template.placeholders if is_object(input.template.placeholders)

default placeholders := {}

# Keys whose parameters are never optional: a stray parameter there is a mismatch.
strict_keys := {"header", "body"}

deny contains reason if {
	lib.is_template
	not found
	reason := {
		"rule": "template.unknown",
		"message": sprintf("template %q does not exist in this WhatsApp Business Account's catalog", [name]),
		"template": name,
		"language": language,
	}
}

deny contains reason if {
	lib.is_template
	found
	not language_found
	available := sort([l | some l in lib.items(input.template.languages); is_string(l)])
	reason := {
		"rule": "template.language",
		"message": sprintf(
			"template %q has no %s version; the catalog has it in: %s",
			[name, language, concat(", ", available)],
		),
		"template": name,
		"language": language,
		"languages": available,
	}
}

deny contains reason if {
	lib.is_template
	language_found
	status != sendable_status
	status != paused_status
	reason := {
		"rule": "template.not_approved",
		"message": sprintf("template %q (%s) has status %v; only %s templates may be sent", [name, language, status, sendable_status]),
		"template": name,
		"language": language,
		"status": status,
	}
}

deny contains reason if {
	lib.is_template
	language_found
	status == paused_status
	reason := {
		"rule": "template.paused",
		"message": sprintf(
			"template %q (%s) is paused by Meta for low quality; it cannot be sent until it is unpaused",
			[name, language],
		),
		"template": name,
		"language": language,
		"status": status,
	}
}

# Every component the catalog gives placeholders must get exactly that many parameters.
deny contains reason if {
	lib.is_template
	language_found
	some key, expected in placeholders
	got := sent_count(key)
	got != expected
	reason := params_reason(key, expected, got)
}

# A header or body the catalog has no placeholders for must get no parameters.
deny contains reason if {
	lib.is_template
	language_found
	some key in strict_keys
	not key in object.keys(placeholders)
	got := sent_count(key)
	got != 0
	reason := params_reason(key, 0, got)
}

params_reason(key, expected, got) := {
	"rule": "template.params",
	"message": sprintf(
		"template %q (%s): component %s was sent %d parameter(s) but the approved template has %d placeholder(s)",
		[name, language, key, got, expected],
	),
	"template": name,
	"language": language,
	"component": key,
	"expected": expected,
	"got": got,
}
