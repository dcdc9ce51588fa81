package sendgate_test

# The decision is data.sendgate.decision, by its full path: through an alias
# (`import data.sendgate`) regorus evaluates every rule under data.sendgate,
# every test package included, on each call. That made every Rego test run (a
# policy reload runs them all) about 40 s instead of under 1 s.

import data.sendgate.account
import data.sendgate.consent
import data.sendgate.content
import data.sendgate.delivery
import data.sendgate.direct_send
import data.sendgate.fixtures_test as fx
import data.sendgate.frequency
import data.sendgate.media
import data.sendgate.messaging_limit
import data.sendgate.pacing
import data.sendgate.payload
import data.sendgate.quiet_hours
import data.sendgate.template
import data.sendgate.throughput
import data.sendgate.window

rules(reasons) := [r.rule | some r in reasons]

test_clean_template_allowed if {
	d := data.sendgate.decision with input as fx.template_input
	d == {"allow": true, "deny": [], "defer": [], "warn": [], "retry_after": null}
}

test_clean_text_allowed if {
	d := data.sendgate.decision with input as fx.text_input
	d.allow == true
	d.retry_after == null
}

test_empty_input_has_a_decision if {
	d := data.sendgate.decision with input as {}
	d.allow == true
}

test_deny_wins_over_defer if {
	inp := fx.tmpl({"recipient": {
		"consent": null,
		"local_time": {"hour": 22, "minute": 0, "weekday": 0},
		"history": {"pair_sent_at": fx.full_burst(fx.now - 1)},
	}})
	d := data.sendgate.decision with input as inp
	d.allow == false
	rules(d.deny) == ["consent.missing"]
	rules(d.defer) == ["frequency.pair_rate", "quiet_hours"]
	d.retry_after == 36000
}

test_defer_only_not_allowed_retry_after_is_max if {
	inp := fx.tmpl({"recipient": {"history": {"pair_sent_at": fx.full_burst(fx.now - 2.5)}, "local_time": {"hour": 7, "minute": 59, "weekday": 0}}})
	d := data.sendgate.decision with input as inp
	d.allow == false
	d.deny == []
	rules(d.defer) == ["frequency.pair_rate", "quiet_hours"]
	d.retry_after == 60
}

test_retry_after_single_defer if {
	d := data.sendgate.decision with input as fx.text({"recipient": {"history": {"pair_sent_at": fx.full_burst(fx.now - 0.5)}}})
	d.allow == false
	d.retry_after == 6
}

test_warn_does_not_block if {
	d := data.sendgate.decision with input as fx.tmpl({"recipient": {"timezone": null, "local_time": null}})
	d.allow == true
	rules(d.warn) == ["quiet_hours.unknown_timezone"]
}

test_deny_sorted_by_rule_then_message if {
	inp := fx.text({
		"account": {"markets": ["BR"]},
		"message": fx.content(["casino and firearms"], ["https://bit.ly/a", "https://tinyurl.com/b"]),
		"recipient": {"last_inbound_at": null},
	})
	d := data.sendgate.decision with input as inp
	rules(d.deny) == [
		"account.market",
		"content.prohibited_commerce", "content.prohibited_commerce",
		"content.url_domain", "content.url_domain",
		"window.closed",
	]
	[r.term | some r in d.deny; r.rule == "content.prohibited_commerce"] == ["casino", "firearms"]
	[r.host | some r in d.deny; r.rule == "content.url_domain"] == ["bit.ly", "tinyurl.com"]
}

test_status_skips_message_rules if {
	inp := fx.status({"message": fx.content(["casino"], ["https://bit.ly/x"])})
	d := data.sendgate.decision with input as inp
	d == {"allow": true, "deny": [], "defer": [], "warn": [], "retry_after": null}
}

test_status_still_gets_account_rules if {
	d := data.sendgate.decision with input as fx.status({"account": {"known": false}})
	rules(d.deny) == ["account.unknown"]
	d.allow == false
}

test_encrypted_only_content_encrypted if {
	inp := fx.encrypted({
		"message": fx.content(["casino"], ["https://bit.ly/x"]),
		"recipient": {"consent": null, "last_inbound_at": null, "history": {"pair_sent_at": fx.full_burst(fx.now - 1)}, "local_time": null},
	})
	d := data.sendgate.decision with input as inp
	rules(d.deny) == ["content.encrypted"]
	d.defer == []
	d.warn == []
	d.retry_after == null
	d.allow == false
}

test_encrypted_with_account_rules if {
	d := data.sendgate.decision with input as fx.encrypted({"account": {"known": false, "markets": ["BR"]}})
	rules(d.deny) == ["account.market", "account.unknown", "content.encrypted"]
}

test_encrypted_type_on_messages_endpoint if {
	inp := fx.text({"message": {"type": "encrypted"}, "recipient": {"last_inbound_at": null}})
	d := data.sendgate.decision with input as inp
	rules(d.deny) == ["content.encrypted"]
}

test_template_checks_through_decision if {
	inp := fx.tmpl({
		"template": {"status": "PAUSED"},
		"recipient": {"history": {"marketing_sent_at": [fx.now - 60]}},
	})
	d := data.sendgate.decision with input as inp
	rules(d.deny) == ["frequency.marketing", "template.paused"]
}

test_free_form_on_marketing_endpoint_gets_marketing_rules if {
	# the gateway refuses these, but the policies treat the endpoint as marketing
	inp := fx.text({
		"endpoint": "marketing_messages",
		"recipient": {
			"local_time": {"hour": 23, "minute": 0, "weekday": 1},
			"history": {"marketing_sent_at": [fx.now - 60]},
		},
	})
	d := data.sendgate.decision with input as inp
	rules(d.deny) == ["frequency.marketing"]
	rules(d.defer) == ["quiet_hours"]
}

test_free_form_on_marketing_endpoint_without_timezone_warns if {
	inp := fx.text({"endpoint": "marketing_messages", "recipient": {"timezone": null, "local_time": null}})
	d := data.sendgate.decision with input as inp
	rules(d.warn) == ["quiet_hours.unknown_timezone"]
	d.allow == true
}

# `reasons` consults only the packages that can fire for each kind of call; the
# reasons it returns must be those of every package, on inputs where many rules
# would fire if they could.
everything_wrong := {
	"account": {
		"known": false, "markets": ["BR"], "quality": "RED", "status": "FLAGGED",
		"marketing_paused": {"alert": "spam", "message": "131048 x1", "since": fx.now - 60},
		"portfolio": "102290129340398",
		"throughput": fx.refused_count(80),
		"reach": fx.refused_count(250),
		"same_content": object.union(fx.refused_count(100), {"hash": "0123456789abcdef", "category": "MARKETING", "threshold": "category"}),
	},
	"message": fx.content(["casino"], ["https://bit.ly/x"]),
	"recipient": {
		"consent": {"status": "opted_in", "categories": []},
		"last_inbound_at": null,
		"local_time": {"hour": 23, "minute": 0, "weekday": 1},
		"history": {"pair_sent_at": fx.full_burst(fx.now - 1), "marketing_sent_at": [fx.now - 60]},
	},
	"template": {"status": "PAUSED"},
}

# A PDF of 200 MB uploaded through sendgate, sent as an image.
wrong_media := {
	"kind": "image", "id": "1480000000000001", "link": null, "extension": null, "known": true,
	"mime_type": "application/pdf", "declared_type": "application/pdf", "size": 209715200, "animated": null,
}

gating_inputs := [
	fx.text(everything_wrong),
	fx.text(object.union(everything_wrong, {"endpoint": "marketing_messages"})),
	fx.text(object.union(everything_wrong, {"message": {"type": "image"}, "recipient": {"local_time": null}})),
	fx.text(object.union(everything_wrong, {"message": {"type": "image", "media": wrong_media}})),
	fx.text(object.union(everything_wrong, {
		"endpoint": "marketing_messages",
		"message": {"type": "sticker", "media": object.union(wrong_media, {"kind": "sticker"})},
	})),
	fx.tmpl(object.union(everything_wrong, {"message": {"media": wrong_media}})),
	fx.tmpl(everything_wrong),
	fx.tmpl(object.union(everything_wrong, {"template": {"category": "UTILITY"}})),
	fx.tmpl(object.union(everything_wrong, {"endpoint": "marketing_messages", "template": {"category": "UTILITY"}})),
	fx.tmpl(object.union(everything_wrong, {"recipient": {"consent": null, "local_time": null}})),
	fx.text({}),
	fx.tmpl({}),
	fx.direct(everything_wrong),
	fx.direct(object.union(everything_wrong, {"account": {"direct_send": false}, "message": {"ttl_seconds": 1}})),
	fx.direct(object.union(signals_wrong, {"message": {"category": "authentication", "recipient_field": "recipient", "ttl_seconds": 901}})),
	fx.tmpl(signals_wrong),
	fx.tmpl(object.union(signals_wrong, {"endpoint": "marketing_messages"})),
	fx.text(signals_wrong),
	fx.text(object.union(signals_wrong, {"endpoint": "marketing_messages"})),
	fx.status(signals_wrong),
	fx.encrypted(signals_wrong),
	fx.text(object.union(everything_wrong, {"message": bad_interactive})),
	fx.text(object.union(everything_wrong, {"endpoint": "marketing_messages", "message": bad_interactive})),
	fx.direct(object.union(everything_wrong, {"message": bad_interactive})),
]

# What payload.rego refuses, in the shape of docs/input.md.
bad_interactive := {
	"type": "interactive",
	"interactive_type": "button",
	"interactive": {
		"type": "button",
		"fields": [{"field": "interactive.body.text", "kind": "body", "length": 1025}],
		"button_count": 4,
		"duplicate_button_ids": ["yes"],
		"duplicate_button_titles": [],
		"section_count": 0,
		"row_count": 0,
	},
}

# Meta's signals: a US number, held-back and undeliverable failures, both messaging restrictions.
signals_wrong := {
	"account": {"restrictions": [
		{"type": "RESTRICTED_BIZ_INITIATED_MESSAGING", "expires_at": fx.now + 60},
		{"type": "RESTRICTED_CUSTOMER_INITIATED_MESSAGING", "expires_at": null},
	]},
	"recipient": {
		"country": "US",
		"last_inbound_at": fx.now - 60,
		"delivery_failures": [
			{"code": 131049, "at": fx.now - 10},
			{"code": 131026, "at": fx.now - 20},
			{"code": 131026, "at": fx.now - 30},
			{"code": 131026, "at": fx.now - 40},
		],
	},
}

all_deny_reasons := (((message_deny_reasons | direct_send.deny) | (delivery.deny | delivery.marketing_deny)) | media.deny) | payload.deny

message_deny_reasons := (((((account.deny | account.marketing_deny) | consent.deny) | window.deny) | template.deny) | frequency.deny) | content.deny

test_branches_consult_every_package_that_can_fire if {
	every inp in gating_inputs {
		d := data.sendgate.decision with input as inp
		all_deny := all_deny_reasons with input as inp
		all_counted := messaging_limit.deny with input as inp
		all_defer := ((frequency.defer | quiet_hours.defer) | throughput.defer) | pacing.defer with input as inp
		all_warn := quiet_hours.warn with input as inp
		{r | some r in d.deny} == all_deny | all_counted
		{r | some r in d.defer} == all_defer
		{r | some r in d.warn} == all_warn
	}
}

test_gating_inputs_fire_many_rules if {
	fired := {r.rule |
		some inp in gating_inputs
		d := data.sendgate.decision with input as inp
		some r in array.concat(array.concat(d.deny, d.defer), d.warn)
	}
	count(fired) >= 20
}

test_direct_send_allowed_outside_the_window if {
	d := data.sendgate.decision with input as fx.direct_send_input
	d == {"allow": true, "deny": [], "defer": [], "warn": [], "retry_after": null}
}

test_direct_send_not_enabled_instead_of_window_closed if {
	d := data.sendgate.decision with input as fx.direct({"account": {"direct_send": false}})
	rules(d.deny) == ["direct_send.not_enabled"]
}

test_direct_send_gets_consent_and_pair_rate if {
	inp := fx.direct({"recipient": {"consent": null, "history": {"pair_sent_at": fx.full_burst(fx.now - 1)}}})
	d := data.sendgate.decision with input as inp
	rules(d.deny) == ["consent.missing"]
	rules(d.defer) == ["frequency.pair_rate"]
}

test_us_marketing_denied_through_decision if {
	d := data.sendgate.decision with input as fx.tmpl({"recipient": {"country": "US"}})
	rules(d.deny) == ["delivery.marketing_country"]
}

test_status_and_encrypted_calls_count_against_the_throughput if {
	refused := {"account": {"throughput": fx.refused_count(80), "reach": fx.refused_count(250)}}
	every inp in [fx.status(refused), fx.encrypted(refused)] {
		d := data.sendgate.decision with input as inp
		rules(d.defer) == ["throughput.exceeded"]
		not "messaging_limit.reached" in rules(d.deny)
		d.retry_after == 1
	}
}

reach_refused := object.union(fx.refused_count(250), {"window_seconds": 86400, "retry_after": 3600.5})

paced_refused := object.union(fx.refused_count(5), {"window_seconds": 60, "hash": "0123456789abcdef", "category": "MARKETING", "threshold": "category"})

test_throughput_wait_rounded_up_to_a_second if {
	d := data.sendgate.decision with input as fx.tmpl({"account": {"throughput": fx.refused_count(20)}})
	d.allow == false
	d.retry_after == 1
	rules(d.defer) == ["throughput.exceeded"]
}

test_messaging_limit_denies_direct_send if {
	d := data.sendgate.decision with input as fx.direct({"account": {"reach": reach_refused}})
	rules(d.deny) == ["messaging_limit.reached"]
}

test_pacing_defers_a_text_too if {
	d := data.sendgate.decision with input as fx.text({"account": {"same_content": paced_refused}})
	rules(d.defer) == ["pacing.same_content"]
	d.retry_after == 1
}
