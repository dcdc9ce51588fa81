# Template checks against the WABA catalog, before Meta rejects the send:
# missing or not approved (132001), paused (132015), disabled (132016),
# parameter count mismatch (132000).
package sendgate.template

import data.sendgate.lib

# Every rule starts with the type test, so other messages pay one comparison
# per rule, and tests the catalog facts inline in the order that lets an
# approved, found template stop soonest.

name := input.message.template.name

language := input.message.template.language

sendable_status := "APPROVED"

paused_status := "PAUSED"

deny contains reason if {
	input.message.type == "template"
	not input.template.found == true
	reason := {
		"rule": "template.unknown",
		"message": sprintf("template %q does not exist in this WhatsApp Business Account's catalog", [name]),
		"template": name,
		"language": language,
	}
}

deny contains reason if {
	input.message.type == "template"
	not input.template.language_found == true
	input.template.found == true
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

# Status and parameters only mean something once the template is found in the
# language the app asked for.
deny contains reason if {
	input.message.type == "template"
	status := input.template.status
	status != "APPROVED"
	status != "PAUSED"
	input.template.language_found == true
	input.template.found == true
	reason := {
		"rule": "template.not_approved",
		"message": sprintf("template %q (%s) has status %v; only %s templates may be sent", [name, language, status, sendable_status]),
		"template": name,
		"language": language,
		"status": status,
	}
}

deny contains reason if {
	input.message.type == "template"
	input.template.status == "PAUSED"
	input.template.language_found == true
	input.template.found == true
	reason := {
		"rule": "template.paused",
		"message": sprintf(
			"template %q (%s) is paused by Meta for low quality; it cannot be sent until it is unpaused",
			[name, language],
		),
		"template": name,
		"language": language,
		"status": paused_status,
	}
}

# Every component key the catalog has placeholders for must get exactly that
# many parameters (the parameter counts of the components sent with that key,
# added up; none sent = 0). Header and body always count: one the catalog has no
# placeholders for must get no parameters (a stray parameter there is a
# mismatch); buttons only when the catalog lists them (quick-reply and flow
# buttons, whose parameters are optional, are not listed).
deny contains reason if {
	input.message.type == "template"
	input.template.language_found == true
	input.template.found == true
	placeholders := input.template.placeholders
	is_object(placeholders)
	some key, expected in object.union({"header": 0, "body": 0}, placeholders)
	got := sum([c.parameter_count | some c in input.message.template.components; c.key == key])
	got != expected
	reason := params_reason(key, expected, got)
}

# No placeholders from the catalog: header and body must get no parameters.
deny contains reason if {
	input.message.type == "template"
	input.template.language_found == true
	input.template.found == true
	not is_object(object.get(input, ["template", "placeholders"], null))
	some key in ["header", "body"]
	got := sent_count(key)
	got != 0
	reason := params_reason(key, 0, got)
}

sent_count(key) := sum([c.parameter_count | some c in input.message.template.components; c.key == key])

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
