# Opt-in before business-initiated templates (WhatsApp Business Messaging Policy:
# "you may only contact people on WhatsApp if ... you have received opt-in
# permission"), opt-outs honoured, and per-category opt-in where required.
# Free-form messages need no consent record: they can only answer a user who
# wrote in the last 24 hours (see sendgate.window).
package sendgate.consent

import data.sendgate.lib

# Every rule here is about templates: the type test comes first, so other
# messages pay one comparison per rule. Lib rules by full path (see content.rego).

# The record's time in whole seconds (%v would write 1.7e+09 in OPA: see lib.whole_seconds).
default updated_label := "unknown"

updated_label := sprintf("%d", [floor(input.recipient.consent.updated_at)]) if {
	is_number(input.recipient.consent.updated_at)
}

default source_label := "an unknown source"

source_label := input.recipient.consent.source if {
	is_string(input.recipient.consent.source)
}

deny contains missing_reason("a business-initiated template") if {
	input.message.type == "template"
	not is_object(object.get(input, ["recipient", "consent"], null))
}

deny contains opted_out_reason("no template may be sent to them (this one: category %s)") if {
	input.message.type == "template"
	input.recipient.consent.status == "opted_out"
}

# The consent category this template's category needs (none by default except
# marketing), compared case-insensitively with the categories the recipient opted
# in to; an exact match (the usual case) needs no lower-casing of the list. The
# template's category is lib.template_category, spelled out in two rules: the
# marketing_messages endpoint only carries marketing, whatever the catalog says.
deny contains reason if {
	input.message.type == "template"
	input.recipient.consent.status == "opted_in"
	input.endpoint == "marketing_messages"
	required := required_category("MARKETING")
	is_string(required)
	not required in object.get(input, ["recipient", "consent", "categories"], null)
	not required in held_categories
	reason := category_reason(required)
}

deny contains reason if {
	input.message.type == "template"
	input.recipient.consent.status == "opted_in"
	input.endpoint != "marketing_messages"
	category := input.template.category
	is_string(category)
	required := required_category(category)
	is_string(required)
	not required in object.get(input, ["recipient", "consent", "categories"], null)
	not required in held_categories
	reason := category_reason(required)
}

# Direct Send (lib.direct_send): a business-initiated message of its category, so the
# consent a template of that category needs. Each rule starts with the category test: no
# other message carries one.
deny contains missing_reason("a business-initiated Direct Send message") if {
	is_string(input.message.category)
	data.sendgate.lib.direct_send
	not is_object(object.get(input, ["recipient", "consent"], null))
}

deny contains opted_out_reason("no Direct Send message may go to them (category %s)") if {
	is_string(input.message.category)
	input.recipient.consent.status == "opted_out"
	data.sendgate.lib.direct_send
}

deny contains reason if {
	category := input.message.category
	is_string(category)
	input.recipient.consent.status == "opted_in"
	data.sendgate.lib.direct_send
	required := required_category(category)
	is_string(required)
	not required in object.get(input, ["recipient", "consent", "categories"], null)
	not required in held_categories
	reason := category_reason(required)
}

# The consent category a category of message needs (lower case); undefined when it needs
# none. Its callers test what it gives with is_string: the register VM goes on past an
# undefined value (docs/policies.md, "Writing rules the VM runs the same").
required_category(category) := lower(needed) if {
	needed := object.get(data.sendgate.params.consent.required_categories, upper(category), null)
	is_string(needed)
}

# `what` is the kind of message that needs the opt-in; `refused` says what may not be sent
# now, with a %s for the category.
missing_reason(what) := {
	"rule": "consent.missing",
	"message": sprintf(
		"no consent record for recipient %s: the recipient must opt in before %s (category %s) is sent",
		[data.sendgate.lib.recipient_label, what, data.sendgate.lib.category_label],
	),
	"category": data.sendgate.lib.category_label,
	"recipient": data.sendgate.lib.recipient_label,
}

opted_out_reason(refused) := {
	"rule": "consent.opted_out",
	"message": sprintf(
		"recipient %s has opted out (latest consent record: from %s at Unix time %s); %s",
		[data.sendgate.lib.recipient_label, source_label, updated_label, sprintf(refused, [data.sendgate.lib.category_label])],
	),
	"category": data.sendgate.lib.category_label,
	"recipient": data.sendgate.lib.recipient_label,
	"source": input.recipient.consent.source,
	"updated_at": input.recipient.consent.updated_at,
}

# The recipient's categories, lower-cased and sorted, for the reason.
held_categories := sort({lower(c) | some c in lib.items(input.recipient.consent.categories); is_string(c)})

category_reason(required) := {
	"rule": "consent.category",
	"message": sprintf(
		"recipient %s opted in to [%s] but not to %q, which a %s template requires",
		[data.sendgate.lib.recipient_label, concat(", ", held_categories), required, data.sendgate.lib.category_label],
	),
	"category": required,
	"template_category": data.sendgate.lib.category_label,
	"categories": held_categories,
	"recipient": data.sendgate.lib.recipient_label,
}
