package sendgate.lib_test

import data.sendgate.fixtures_test as fx
import data.sendgate.lib

test_duration if {
	lib.duration(0) == "0s"
	lib.duration(-5) == "0s"
	lib.duration(6) == "6s"
	lib.duration(2.5) == "2s"
	lib.duration(86400) == "24h"
	lib.duration(172799) == "47h 59m 59s"
	lib.duration(172800) == "2d"
	lib.duration(604800) == "7d"
	lib.duration(604861) == "7d 1m 1s"
	lib.duration(90180) == "25h 3m"
	lib.duration(3661) == "1h 1m 1s"
	lib.duration(35700) == "9h 55m"
	lib.duration(36010) == "10h 10s"
	lib.duration(600) == "10m"
	lib.duration(864610) == "10d 10m 10s"
	lib.duration(59.9) == "59s"
	lib.duration(0.5) == "0s"
}

test_clock if {
	lib.clock({"hour": 7, "minute": 5}) == "07:05"
	lib.clock({"hour": 21, "minute": 0}) == "21:00"
}

test_template_category if {
	lib.template_category == "MARKETING" with input as fx.template_input
	lib.template_category == "UTILITY" with input as fx.tmpl({"template": {"category": "utility"}})
	lib.template_category == "MARKETING" with input as fx.tmpl({"endpoint": "marketing_messages", "template": {"category": null}})
	not lib.template_category with input as fx.tmpl({"template": {"category": null}})
	not lib.template_category with input as fx.text_input
}

test_category_label if {
	lib.category_label == "marketing" with input as fx.template_input
	lib.category_label == "unknown" with input as fx.tmpl({"template": {"category": null}})
}

test_marketing if {
	lib.marketing with input as fx.template_input
	not lib.marketing with input as fx.tmpl({"template": {"category": "AUTHENTICATION"}})
	not lib.marketing with input as fx.text_input
}

test_kinds if {
	lib.is_template with input as fx.template_input
	lib.free_form with input as fx.text_input
	not lib.free_form with input as fx.template_input
	not lib.free_form with input as fx.status_input
	lib.is_status with input as fx.status_input
	lib.encrypted with input as fx.encrypted_input
	not lib.encrypted with input as fx.text_input
}

test_recipient_label if {
	lib.recipient_label == "14165551234" with input as fx.text_input
	lib.recipient_label == "14165551234" with input as fx.text({"recipient": null})
	lib.recipient_label == "(unknown recipient)" with input as fx.status_input
}

test_encrypted_by_endpoint_or_type if {
	lib.encrypted with input as {"endpoint": "messages_encrypted", "message": {"type": "text"}}
	lib.encrypted with input as {"endpoint": "messages", "message": {"type": "encrypted"}}
	not lib.encrypted with input as {"endpoint": "messages", "message": {"type": "text"}}
}

test_items if {
	lib.items([1]) == [1]
	lib.items(null) == []
	lib.items({"a": 1}) == []
}

test_whole_seconds if {
	lib.whole_seconds(5.666942800045945) == 5
	lib.whole_seconds(86400) == 86400
	lib.whole_seconds(0.999) == 0
	lib.whole_seconds(-0.5) == 0
	lib.whole_seconds(-3) == 0
}

test_direct_send_is_business_initiated if {
	lib.direct_send with input as fx.direct_send_input
	lib.business_initiated with input as fx.direct_send_input
	lib.business_initiated with input as fx.template_input
	not lib.business_initiated with input as fx.text_input
	not lib.direct_send with input as fx.direct({"account": {"direct_send": false}})
	lib.category_label == "utility" with input as fx.direct_send_input
}

test_characters_are_code_points if {
	lib.characters("") == 0
	lib.characters("abc") == 3
	lib.characters("🎉🎉x") == 3 # count() gives 5 on regorus, 3 on OPA
	lib.characters("e\u0301") == 2
}
