# Opt-in before business-initiated templates (WhatsApp Business Messaging Policy:
# "you may only contact people on WhatsApp if ... you have received opt-in
# permission"), opt-outs honoured, and per-category opt-in where required.
# Free-form messages need no consent record: they can only answer a user who
# wrote in the last 24 hours (see sendgate.window).
package sendgate.consent

import data.sendgate.lib

params := data.sendgate.params.consent

# The latest ledger record, if any.
has_record if is_object(input.recipient.consent)

opted_out if input.recipient.consent.status == "opted_out"

opted_in if input.recipient.consent.status == "opted_in"

# Categories the recipient opted in to, lower-cased.
held_categories := {lower(c) | some c in lib.items(input.recipient.consent.categories); is_string(c)}

source_label := input.recipient.consent.source if {
	is_string(input.recipient.consent.source)
} else := "an unknown source"

# The consent category this template's category needs (none by default except marketing).
required_category := lower(params.required_categories[lib.template_category])

deny contains reason if {
	lib.is_template
	not has_record
	reason := {
		"rule": "consent.missing",
		"message": sprintf(
			"no consent record for recipient %s: the recipient must opt in before a business-initiated template (category %s) is sent",
			[lib.recipient_label, lib.category_label],
		),
		"category": lib.category_label,
		"recipient": lib.recipient_label,
	}
}

deny contains reason if {
	lib.is_template
	opted_out
	reason := {
		"rule": "consent.opted_out",
		"message": sprintf(
			"recipient %s has opted out (latest consent record: from %s at Unix time %v); no template may be sent to them (this one: category %s)",
			[lib.recipient_label, source_label, input.recipient.consent.updated_at, lib.category_label],
		),
		"category": lib.category_label,
		"recipient": lib.recipient_label,
		"source": input.recipient.consent.source,
		"updated_at": input.recipient.consent.updated_at,
	}
}

deny contains reason if {
	lib.is_template
	opted_in
	required := required_category
	not required in held_categories
	held := sort(held_categories)
	reason := {
		"rule": "consent.category",
		"message": sprintf(
			"recipient %s opted in to [%s] but not to %q, which a %s template requires",
			[lib.recipient_label, concat(", ", held), required, lib.category_label],
		),
		"category": required,
		"template_category": lib.category_label,
		"categories": held,
		"recipient": lib.recipient_label,
	}
}
