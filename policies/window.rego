# The customer service window: free-form messages only within 24 hours of the
# user's last inbound message; outside it only templates (Meta error 131047).
package sendgate.window

import data.sendgate.lib

# Free-form messages only (lib.free_form, spelled out so that templates, the
# common case, stop at the first comparison): the user never wrote, or wrote
# window.seconds or more ago. A Direct Send message (one with a category) is
# business-initiated: direct_send's rules judge it (Meta answers 100, not 131047,
# when the account may not use Direct Send).
deny contains reason if {
	not is_number(object.get(input, ["recipient", "last_inbound_at"], null))
	input.message.type != "template"
	is_string(input.message.type)
	not input.message.is_status == true
	not is_string(object.get(input, ["message", "category"], null))
	reason := {
		"rule": "window.closed",
		"message": sprintf(
			"%s message to %s outside the customer service window: the recipient has never written to this number, so only an approved template may be sent",
			[input.message.type, data.sendgate.lib.recipient_label],
		),
		"last_inbound_at": null,
		"window_seconds": data.sendgate.params.window.seconds,
	}
}

deny contains reason if {
	input.message.type != "template"
	last_inbound_at := input.recipient.last_inbound_at
	is_number(last_inbound_at)
	elapsed := input.now - last_inbound_at
	window_seconds := data.sendgate.params.window.seconds
	elapsed >= window_seconds
	is_string(input.message.type)
	not input.message.is_status == true
	not is_string(object.get(input, ["message", "category"], null))
	reason := {
		"rule": "window.closed",
		"message": sprintf(
			"%s message to %s outside the customer service window: the recipient last wrote %s ago (%d s), the window is %s; only an approved template may be sent",
			[input.message.type, data.sendgate.lib.recipient_label, lib.duration(elapsed), lib.whole_seconds(elapsed), lib.duration(window_seconds)],
		),
		"last_inbound_at": last_inbound_at,
		"elapsed": lib.whole_seconds(elapsed),
		"window_seconds": window_seconds,
	}
}
