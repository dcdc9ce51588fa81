package sendgate.window_test

import data.sendgate.fixtures_test as fx
import data.sendgate.window

test_open_window_allows_free_form if {
	reasons := window.deny with input as fx.text_input
	count(reasons) == 0
}

test_closed_when_user_never_wrote if {
	reasons := window.deny with input as fx.text({"recipient": {"last_inbound_at": null}})
	r := fx.only(reasons, "window.closed")
	r.last_inbound_at == null
	r.window_seconds == 86400
	contains(r.message, "never written")
}

test_open_one_second_before_24h if {
	reasons := window.deny with input as fx.text({"recipient": {"last_inbound_at": fx.now - 86399}})
	count(reasons) == 0
}

test_closed_at_exactly_24h if {
	reasons := window.deny with input as fx.text({"recipient": {"last_inbound_at": fx.now - 86400}})
	r := fx.only(reasons, "window.closed")
	r.elapsed == 86400
	r.last_inbound_at == fx.now - 86400
	contains(r.message, "24h ago")
}

test_closed_message_says_how_long_ago if {
	reasons := window.deny with input as fx.text({"recipient": {"last_inbound_at": fx.now - 90180}})
	contains(fx.only(reasons, "window.closed").message, "25h 3m ago")
}

test_closed_for_media_and_reactions if {
	image := window.deny with input as fx.text({"message": {"type": "image"}, "recipient": {"last_inbound_at": null}})
	reaction := window.deny with input as fx.text({"message": {"type": "reaction"}, "recipient": {"last_inbound_at": null}})
	fx.ids(image) == {"window.closed"}
	fx.ids(reaction) == {"window.closed"}
}

test_templates_skip_window if {
	reasons := window.deny with input as fx.tmpl({"recipient": {"last_inbound_at": null}})
	count(reasons) == 0
}

test_status_skips_window if {
	reasons := window.deny with input as fx.status_input
	count(reasons) == 0
}

test_window_length_from_data if {
	inp := fx.text({"recipient": {"last_inbound_at": fx.now - 3600}})
	closed := window.deny with input as inp with data.sendgate.params.window.seconds as 3600
	open := window.deny with input as inp with data.sendgate.params.window.seconds as 3601
	fx.ids(closed) == {"window.closed"}
	count(open) == 0
}

test_closed_without_recipient_facts if {
	# no recipient facts at all (null): as never written, on both engines
	reasons := window.deny with input as fx.text({"recipient": null})
	r := fx.only(reasons, "window.closed")
	r.last_inbound_at == null
	contains(r.message, "never written")
}

test_direct_send_not_window_closed if {
	every inp in [
		fx.direct_send_input,
		fx.direct({"account": {"direct_send": false}}),
		fx.direct({"recipient": {"last_inbound_at": fx.now - 90000}}),
	] {
		count(window.deny) == 0 with input as inp
	}
}
