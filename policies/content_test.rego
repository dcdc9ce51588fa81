package sendgate.content_test

import data.sendgate.content
import data.sendgate.fixtures_test as fx

texts(ts) := fx.text({"message": {"texts": ts}})

urls(us) := fx.text({"message": {"urls": us}})

limited(entries) := fx.text({"message": {"limited_texts": entries}})

test_clean_message_passes if {
	reasons := content.deny with input as fx.text_input
	count(reasons) == 0
}

test_banned_term_fires_case_insensitive if {
	reasons := content.deny with input as texts(["Hello", "Visit our CASINO tonight!"])
	r := fx.only(reasons, "content.banned_term")
	r.term == "casino"
	contains(r.message, "casino")
}

test_banned_term_phrase_across_punctuation if {
	reasons := content.deny with input as texts(["Buy-Followers now, cheap"])
	fx.only(reasons, "content.banned_term").term == "buy followers"
}

test_banned_term_at_start_and_end if {
	start := content.deny with input as texts(["casino night"])
	ending := content.deny with input as texts(["tonight: casino"])
	fx.ids(start) == {"content.banned_term"}
	fx.ids(ending) == {"content.banned_term"}
}

test_banned_term_respects_word_boundaries if {
	reasons := content.deny with input as texts(["The casinoroyale hotel", "occasional payday-loaner"])
	count(reasons) == 0
}

test_banned_terms_one_reason_per_term if {
	reasons := content.deny with input as texts(["casino", "Casino!", "payday loan offers"])
	{r.term | some r in reasons} == {"casino", "payday loan"}
	count(reasons) == 2
}

test_banned_terms_from_data if {
	inp := texts(["Limited offer on Widgets"])
	hit := content.deny with input as inp with data.sendgate.params.content.banned_terms as ["widgets"]
	miss := content.deny with input as inp with data.sendgate.params.content.banned_terms as []
	fx.only(hit, "content.banned_term").term == "widgets"
	count(miss) == 0
}

test_blank_banned_term_ignored if {
	reasons := content.deny with input as texts(["", "hello"]) with data.sendgate.params.content.banned_terms as ["", " - "]
	count(reasons) == 0
}

test_shortener_fires if {
	reasons := content.deny with input as urls(["https://bit.ly/3xYz"])
	r := fx.only(reasons, "content.url_domain")
	r.url == "https://bit.ly/3xYz"
	r.host == "bit.ly"
	r.domain == "bit.ly"
	contains(r.message, "bit.ly")
}

test_shortener_host_normalized if {
	reasons := content.deny with input as urls(["HTTP://user@WWW.Bit.LY:8080/x?y=1"])
	fx.only(reasons, "content.url_domain").host == "bit.ly"
}

test_shortener_without_scheme if {
	reasons := content.deny with input as urls(["bit.ly/x", "tinyurl.com"])
	{r.host | some r in reasons} == {"bit.ly", "tinyurl.com"}
}

test_shortener_subdomain if {
	reasons := content.deny with input as urls(["https://go.t.co/x"])
	r := fx.only(reasons, "content.url_domain")
	r.host == "go.t.co"
	r.domain == "t.co"
}

test_shortener_lookalikes_pass if {
	reasons := content.deny with input as urls(["https://notbit.ly/x", "https://t.com/x", "https://bit.ly.example.com/x", "https://example.com/?u=bit.ly"])
	count(reasons) == 0
}

test_allowlist_empty_allows_any_host if {
	reasons := content.deny with input as urls(["https://evil.example.net/x"])
	count(reasons) == 0
}

test_allowlist_fires_for_other_hosts if {
	reasons := content.deny with input as urls(["https://evil.com/x", "https://example.com.evil.com/"])
		with data.sendgate.params.content.allowed_domains as ["example.com"]
	{r.host | some r in reasons} == {"evil.com", "example.com.evil.com"}
	every r in reasons {
		r.rule == "content.url_domain"
		r.allowed == ["example.com"]
	}
}

test_allowlist_passes_domain_and_subdomains if {
	reasons := content.deny with input as urls(["https://example.com", "www.example.com/x", "https://shop.Example.com:443/y"])
		with data.sendgate.params.content.allowed_domains as ["example.com"]
	count(reasons) == 0
}

test_allowlisted_shortener_still_denied if {
	reasons := content.deny with input as urls(["https://bit.ly/x"])
		with data.sendgate.params.content.allowed_domains as ["bit.ly"]
	fx.only(reasons, "content.url_domain").domain == "bit.ly"
}

test_length_body_at_limit_passes if {
	reasons := content.deny with input as limited([{"field": "text.body", "kind": "body", "length": 4096}])
	count(reasons) == 0
}

test_length_body_over_limit if {
	reasons := content.deny with input as limited([{"field": "text.body", "kind": "body", "length": 4097}])
	r := fx.only(reasons, "content.length")
	r.field == "text.body"
	r.limit == 4096
	r.length == 4097
	contains(r.message, "4097")
}

test_length_caption if {
	ok := content.deny with input as limited([{"field": "image.caption", "kind": "caption", "length": 1024}])
	over := content.deny with input as limited([{"field": "image.caption", "kind": "caption", "length": 1025}])
	count(ok) == 0
	fx.only(over, "content.length").limit == 1024
}

test_length_unknown_kind_ignored if {
	reasons := content.deny with input as limited([{"field": "x", "kind": "title", "length": 100000}])
	count(reasons) == 0
}

test_encrypted_endpoint_fires if {
	reasons := content.deny with input as fx.encrypted_input
	r := fx.only(reasons, "content.encrypted")
	r.endpoint == "messages_encrypted"
}

test_encrypted_type_fires if {
	reasons := content.deny with input as fx.text({"message": {"type": "encrypted"}})
	fx.ids(reasons) == {"content.encrypted"}
}

test_encrypted_not_for_plain_messages if {
	reasons := content.deny with input as fx.template_input
	count(reasons) == 0
}

test_banned_terms_with_punctuation_next_to_each_other if {
	reasons := content.deny with input as texts(["-- casino --", "...payday loan!"])
		with data.sendgate.params.content.banned_terms as ["-Casino-", "(payday loan)", "firearms"]
	{r.term | some r in reasons} == {"-Casino-", "(payday loan)"}
}

test_banned_phrase_not_across_texts if {
	reasons := content.deny with input as texts(["Want to buy", "followers?"])
	count(reasons) == 0
}

test_banned_phrase_across_line_break_in_one_text if {
	reasons := content.deny with input as texts(["Want to buy\nfollowers?"])
	fx.only(reasons, "content.banned_term").term == "buy followers"
}
