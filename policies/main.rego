# sendgate's entrypoint: data.sendgate.decision, evaluated once per send call
# on the input document of docs/input.md.
#
# Account rules apply to every call. Read receipts and typing indicators
# (message.is_status) skip every message rule. Encrypted sends, whose content the
# gateway cannot read, get only the account rules and content.encrypted.
#
# Evaluation cost: the gateway evaluates this once per message, in-process, and
# on regorus every rule evaluated costs a few microseconds. So `reasons` consults
# only the packages that can fire for the kind of call at hand; every rule of a
# package left out must require what its branch excludes:
#   consent, template            every rule requires message.type == "template"
#                                (consent's Direct Send rules: lib.direct_send)
#   window                       every rule requires a type other than "template", and no
#                                message.category
#   direct_send                  every rule requires message.category (Direct Send)
#   payload                      every rule requires type "interactive" or "location"
#   frequency.deny, quiet_hours  every rule requires lib.marketing
#   account.marketing_deny       every rule requires lib.marketing
#   delivery.marketing_deny      every rule requires lib.marketing
#   delivery.deny                every rule requires lib.business_initiated (a template, or
#                                lib.direct_send)
#   messaging_limit, pacing      every rule requires a message (not a status call,
#                                nor an encrypted send); throughput applies to all
#   media                        every rule requires a media message (message.type
#                                image, video, audio, document or sticker)
# (main_test checks the branches against the union of every package on a range
# of inputs.) Import aliases are fine here, in the parent package; elsewhere
# regorus evaluates every rule of a package reached through an alias (see lib.rego).
package sendgate

import data.sendgate.account
import data.sendgate.consent
import data.sendgate.content
import data.sendgate.delivery
import data.sendgate.direct_send
import data.sendgate.frequency
import data.sendgate.media
import data.sendgate.messaging_limit
import data.sendgate.pacing
import data.sendgate.payload
import data.sendgate.quiet_hours
import data.sendgate.template
import data.sendgate.throughput
import data.sendgate.window

# [deny, defer, warn]: the reasons of the packages that apply to this call.
reasons := [account.deny, throughput.defer, set()] if {
	input.message.is_status == true
} else := encrypted_reasons if {
	input.endpoint == "messages_encrypted"
} else := encrypted_reasons if {
	input.message.type == "encrypted"
} else := marketing_template_reasons if {
	# lib.marketing, spelled out (its two cases): cheaper for the other templates
	input.message.type == "template"
	input.endpoint == "marketing_messages"
} else := marketing_template_reasons if {
	input.message.type == "template"
	is_string(input.template.category)
	upper(input.template.category) == "MARKETING"
} else := template_reasons if {
	input.message.type == "template"
} else := direct_send_reasons if {
	# Direct Send, or a category the account may not use (direct_send.not_enabled): never
	# marketing (the gateway refuses other categories)
	is_string(input.message.category)
} else := marketing_free_form_reasons if {
	# a free-form message on the marketing_messages endpoint (the gateway refuses
	# those): lib.marketing
	input.endpoint == "marketing_messages"
} else := [
	(((((account.deny | window.deny) | content.deny) | media.deny) | messaging_limit.deny) | payload.deny),
	message_defer,
	set(),
]

template_reasons := [
	(((((account.deny | consent.deny) | template.deny) | delivery.deny) | content.deny) | messaging_limit.deny),
	message_defer,
	set(),
]

direct_send_reasons := [
	((((((account.deny | consent.deny) | direct_send.deny) | delivery.deny) | content.deny) | messaging_limit.deny) | payload.deny),
	message_defer,
	set(),
]

marketing_free_form_reasons := [
	(((((account.deny | window.deny) | marketing_deny) | delivery.deny) | free_form_content_deny) | messaging_limit.deny),
	message_defer | quiet_hours.defer,
	quiet_hours.warn,
]

# What a free-form message says and carries.
free_form_content_deny := (content.deny | media.deny) | payload.deny

marketing_template_reasons := [
	((((((account.deny | consent.deny) | template.deny) | marketing_deny) | delivery.deny) | content.deny) | messaging_limit.deny),
	message_defer | quiet_hours.defer,
	quiet_hours.warn,
]

# The rules only marketing gets (lib.marketing), and the defers every message gets.
marketing_deny := (account.marketing_deny | frequency.deny) | delivery.marketing_deny

message_defer := (frequency.defer | throughput.defer) | pacing.defer

encrypted_reasons := [
	account.deny | {r | some r in content.deny; r.rule == "content.encrypted"},
	throughput.defer,
	set(),
]

deny_reasons := reasons[0]

defer_reasons := reasons[1]

warn_reasons := reasons[2]

# Reasons in a stable order: by rule id, then message, then the whole reason.
ordered(reasons) := [t[2] | some t in sort([[r.rule, r.message, r] | some r in reasons])]

default allow := false

allow if {
	count(deny_reasons) == 0
	count(defer_reasons) == 0
}

# The longest wait any defer reason asks for, in whole seconds.
default retry_after := null

retry_after := max(waits) if {
	waits := {ceil(r.retry_after) | some r in defer_reasons; is_number(r.retry_after)}
	count(waits) > 0
}

# Nothing to say (most calls) short-cuts the sorting.

# METADATA
# description: sendgate's decision on one send call, on the input document of docs/input.md
# entrypoint: true
decision := {"allow": true, "deny": [], "defer": [], "warn": [], "retry_after": null} if {
	reasons == [set(), set(), set()]
} else := {
	"allow": allow,
	"deny": ordered(deny_reasons),
	"defer": ordered(defer_reasons),
	"warn": ordered(warn_reasons),
	"retry_after": retry_after,
}
