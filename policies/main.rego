# sendgate's entrypoint: data.sendgate.decision, evaluated once per send call
# on the input document of docs/input.md.
#
# Account rules apply to every call. Read receipts and typing indicators
# (message.is_status) skip every message rule. Encrypted sends, whose content the
# gateway cannot read, get only the account rules and content.encrypted.
package sendgate

import data.sendgate.account
import data.sendgate.consent
import data.sendgate.content
import data.sendgate.frequency
import data.sendgate.lib
import data.sendgate.quiet_hours
import data.sendgate.template
import data.sendgate.window

message_rules if {
	not lib.is_status
	not lib.encrypted
}

encrypted_rules if {
	not lib.is_status
	lib.encrypted
}

deny_reasons contains r if some r in account.deny

deny_reasons contains r if {
	message_rules
	some r in consent.deny
}

deny_reasons contains r if {
	message_rules
	some r in window.deny
}

deny_reasons contains r if {
	message_rules
	some r in template.deny
}

deny_reasons contains r if {
	message_rules
	some r in frequency.deny
}

deny_reasons contains r if {
	message_rules
	some r in content.deny
}

deny_reasons contains r if {
	encrypted_rules
	some r in content.deny
	r.rule == "content.encrypted"
}

defer_reasons contains r if {
	message_rules
	some r in frequency.defer
}

defer_reasons contains r if {
	message_rules
	some r in quiet_hours.defer
}

warn_reasons contains r if {
	message_rules
	some r in quiet_hours.warn
}

# Reasons in a stable order: by rule id, then message, then the whole reason.
ordered(reasons) := [t[3] | some t in sort([[r.rule, r.message, json.marshal(r), r] | some r in reasons])]

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

decision := {
	"allow": allow,
	"deny": ordered(deny_reasons),
	"defer": ordered(defer_reasons),
	"warn": ordered(warn_reasons),
	"retry_after": retry_after,
}
