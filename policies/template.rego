# Template checks against the WABA catalog, before Meta rejects the send:
# missing or not approved (132001), paused (132015), disabled (132016, also a
# flagged template once its disable date has passed), parameter count mismatch
# (132000); and the parameters as Meta validates them (docs/policies.md 3):
# newline, tab or a run of spaces (132018), empty (100), an authentication
# code or a header text too long (131009, 132005), a body too long once filled
# in (132005), undeclared parameter names (100), a header of the wrong kind
# (132012). Limits in data.sendgate.params.template.
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
	status != "DISABLED"
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

# DISABLED: Meta disabled it for its quality (after pauses, or a flag not
# resolved in time): Meta answers 132016, not 132001.
deny contains reason if {
	input.message.type == "template"
	input.template.status == "DISABLED"
	input.template.language_found == true
	input.template.found == true
	reason := disabled_reason(
		sprintf("template %q (%s) is disabled by Meta; it can no longer be sent", [name, language]),
		null,
	)
}

# FLAGGED keeps a template approved until the disable date its event gave; from
# then on Meta disables it, whether or not its DISABLED webhook has arrived.
deny contains reason if {
	input.message.type == "template"
	input.template.flagged == true
	until := input.template.flagged_until
	is_number(until)
	input.now >= until
	input.template.status != "DISABLED"
	input.template.language_found == true
	input.template.found == true
	reason := disabled_reason(
		sprintf(
			"template %q (%s) was flagged by Meta and its disable date (%s ago) has passed",
			[name, language, lib.duration(input.now - until)],
		),
		until,
	)
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

# Meta (132018): "Param text cannot have new-line/tab characters or more than
# 4 consecutive spaces".
deny contains reason if {
	input.message.type == "template"
	input.template.language_found == true
	input.template.found == true
	some p in text_parameters
	not_one_line(p.text)
	reason := param_reason("template.param_format", p, sprintf(
		"has a newline, a tab or more than %d consecutive spaces, which Meta refuses",
		[limits.max_consecutive_spaces],
	))
}

# An empty (or blank) text: Meta answers 100, "Parameter 'text' is mandatory".
deny contains reason if {
	input.message.type == "template"
	input.template.language_found == true
	input.template.found == true
	some p in text_parameters
	trim_space(p.text) == ""
	reason := param_reason("template.param_empty", p, "is empty")
}

# The code of an AUTHENTICATION template (its body parameter, and the copy-code
# or URL button's): at most 15 characters.
deny contains reason if {
	input.message.type == "template"
	input.template.category == "AUTHENTICATION"
	input.template.language_found == true
	input.template.found == true
	some p in text_parameters
	auth_code_component(p.component)
	count(p.text) > limits.auth_code_max # a bound (lib.characters), cheap
	length := lib.characters(p.text)
	length > limits.auth_code_max
	reason := object.union(
		param_reason("template.auth_code_length", p, sprintf(
			"is %d characters; an authentication code is at most %d",
			[length, limits.auth_code_max],
		)),
		{"length": length, "limit": limits.auth_code_max},
	)
}

# A header text parameter: at most 60 characters (Meta answers 132005).
deny contains reason if {
	input.message.type == "template"
	input.template.language_found == true
	input.template.found == true
	some p in text_parameters
	p.component == "header"
	count(p.text) > limits.header_param_max # a bound (lib.characters), cheap
	length := lib.characters(p.text)
	length > limits.header_param_max
	reason := object.union(
		param_reason("template.header_length", p, sprintf(
			"is %d characters; a header text parameter is at most %d",
			[length, limits.header_param_max],
		)),
		{"length": length, "limit": limits.header_param_max},
	)
}

# The body with its placeholders filled in by the parameters sent: at most
# 1,024 characters, 32,768 when the body is the template's only component. The
# gateway gives the body's length without its placeholders and how often each
# appears (docs/input.md), so this is one pass over the parameters.
deny contains reason if {
	input.message.type == "template"
	input.template.language_found == true
	input.template.found == true
	body := input.template.components.body
	is_number(body.fixed_length)
	some c in input.message.template.components
	c.key == "body"
	counts := body.placeholder_counts
	bound := [n | some i, p in c.parameters; n := count(parameter_value(p)) * object.get(counts, placeholder(i, p), 0)]
	body.fixed_length + sum(bound) > body_limit # a bound (lib.characters), cheap
	filled := [n |
		some i, p in c.parameters
		n := lib.characters(parameter_value(p)) * object.get(counts, placeholder(i, p), 0)
	]
	length := body.fixed_length + sum(filled)
	length > body_limit
	reason := {
		"rule": "template.body_length",
		"message": sprintf(
			"template %q (%s): the body is %d characters once filled in; Meta allows %d",
			[name, language, length, body_limit],
		),
		"template": name,
		"language": language,
		"length": length,
		"limit": body_limit,
	}
}

# A named parameter the template does not declare, or a template with named
# parameters sent one without its name: Meta answers 100.
deny contains reason if {
	input.message.type == "template"
	input.template.language_found == true
	input.template.found == true
	some c in input.message.template.components
	declared := input.template.components[c.key].parameter_names
	is_array(declared)
	some sent in c.parameter_names
	not sent in declared
	reason := {
		"rule": "template.param_name",
		"message": sprintf(
			"template %q (%s): component %s has no parameter named %q; it declares: %s",
			[name, language, c.key, sent, concat(", ", declared)],
		),
		"template": name,
		"language": language,
		"component": c.key,
		"parameter_name": sent,
		"declared": declared,
	}
}

deny contains reason if {
	input.message.type == "template"
	input.template.parameter_format == "NAMED"
	input.template.language_found == true
	input.template.found == true
	some c in input.message.template.components
	c.key in {"header", "body"}
	some i, p in c.parameters
	lower(p.type) == "text"
	not is_string(object.get(p, "parameter_name", null))
	reason := {
		"rule": "template.param_name",
		"message": sprintf(
			"template %q (%s) has named parameters: parameter %d of component %s needs its parameter_name",
			[name, language, i + 1, c.key],
		),
		"template": name,
		"language": language,
		"component": c.key,
		"parameter_name": null,
		"declared": input.template.components[c.key].parameter_names,
	}
}

# A header parameter of another kind than the template's header format (an
# image for a VIDEO header, a text for an IMAGE one...): Meta answers 132012.
deny contains reason if {
	input.message.type == "template"
	input.template.language_found == true
	input.template.found == true
	format := input.template.components.header.format
	is_string(format)
	some c in input.message.template.components
	c.key == "header"
	some p in c.parameters
	not header_kind_fits(format, lower(p.type))
	reason := {
		"rule": "template.header_format",
		"message": sprintf(
			"template %q (%s) has a %s header; the header parameter sent is of type %s",
			[name, language, format, lower(p.type)],
		),
		"template": name,
		"language": language,
		"expected": format,
		"got": lower(p.type),
	}
}

# -- helpers ----------------------------------------------------------------

disabled_reason(message, until) := {
	"rule": "template.disabled",
	"message": message,
	"template": name,
	"language": language,
	"status": "DISABLED",
	"flagged_until": until,
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

limits := data.sendgate.params.template

# Every text parameter the app sent: its component key, position and text.
text_parameters contains {"component": c.key, "index": i, "text": p.text} if {
	some c in input.message.template.components
	some i, p in c.parameters
	lower(p.type) == "text"
	is_string(p.text)
}

not_one_line(text) if contains(text, "\n")

not_one_line(text) if contains(text, "\r")

not_one_line(text) if contains(text, "\t")

not_one_line(text) if contains(text, space_run)

# One space more than Meta allows in a row, built once per evaluation.
space_run := concat("", [" " | some _ in numbers.range(0, limits.max_consecutive_spaces)])

# The body, and a button: the copy-code or URL button that carries the code.
auth_code_component(key) if regex.match(`^(body|button_[0-9]+)$`, key)

param_reason(rule, p, what) := {
	"rule": rule,
	"message": sprintf(
		"template %q (%s): parameter %d of component %s %s",
		[name, language, p.index + 1, p.component, what],
	),
	"template": name,
	"language": language,
	"component": p.component,
	"parameter": p.index,
}

body_limit := limits.body_only_max if {
	input.template.components.header == null
	input.template.components.footer == null
	count(input.template.components.buttons) == 0
} else := limits.body_max

# The placeholder a parameter fills: its parameter_name, else its position
# ("1" for the first).
placeholder(i, p) := p.parameter_name if {
	is_string(p.parameter_name)
} else := sprintf("%d", [i + 1])

parameter_value(p) := p.text if {
	is_string(p.text)
} else := fallback if {
	fallback := object.get(p, [lower(p.type), "fallback_value"], null)
	is_string(fallback)
} else := ""

header_kind_fits(format, kind) if {
	format == "TEXT"
	kind in {"text", "currency", "date_time"}
}

header_kind_fits(format, kind) if {
	format != "TEXT"
	upper(kind) == format
}
