# The customer service window: free-form messages only within 24 hours of the
# user's last inbound message; outside it only templates (Meta error 131047).
package sendgate.window

import data.sendgate.lib

window_seconds := data.sendgate.params.window.seconds

last_inbound_at := input.recipient.last_inbound_at if is_number(input.recipient.last_inbound_at)

# Seconds since the user last wrote to this phone number.
elapsed := input.now - last_inbound_at

window_open if elapsed < window_seconds

deny contains reason if {
	lib.free_form
	not window_open
	reason := closed_reason
}

closed_reason := {
	"rule": "window.closed",
	"message": sprintf(
		"%s message to %s outside the customer service window: the recipient has never written to this number, so only an approved template may be sent",
		[input.message.type, lib.recipient_label],
	),
	"last_inbound_at": null,
	"window_seconds": window_seconds,
} if {
	not last_inbound_at
} else := {
	"rule": "window.closed",
	"message": sprintf(
		"%s message to %s outside the customer service window: the recipient last wrote %s ago (%v s), the window is %s; only an approved template may be sent",
		[input.message.type, lib.recipient_label, lib.duration(elapsed), lib.ms(elapsed), lib.duration(window_seconds)],
	),
	"last_inbound_at": last_inbound_at,
	"elapsed": lib.ms(elapsed),
	"window_seconds": window_seconds,
}
