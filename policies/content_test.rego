package sendgate.content_test

import data.sendgate.content
import data.sendgate.fixtures_test as fx

texts(ts) := fx.text({"message": fx.content(ts, [])})

urls(us) := fx.text({"message": fx.content([], us)})

limited(entries) := fx.text({"message": {"limited_texts": entries}})

test_clean_message_passes if {
	reasons := content.deny with input as fx.text_input
	count(reasons) == 0
}

test_banned_term_fires_case_insensitive if {
	reasons := content.deny with input as texts(["Hello", "Get FAKE REVIEWS tonight!"])
	r := fx.only(reasons, "content.banned_term")
	r.term == "fake reviews"
	contains(r.message, "fake reviews")
}

test_banned_term_phrase_across_punctuation if {
	reasons := content.deny with input as texts(["Buy-Followers now, cheap"])
	fx.only(reasons, "content.banned_term").term == "buy followers"
}

test_banned_term_at_start_and_end if {
	start := content.deny with input as texts(["buy likes tonight"])
	ending := content.deny with input as texts(["tonight: buy likes"])
	fx.ids(start) == {"content.banned_term"}
	fx.ids(ending) == {"content.banned_term"}
}

test_banned_term_respects_word_boundaries if {
	reasons := content.deny with input as texts(["The casinoroyale hotel", "occasional payday-loaner"])
	count(reasons) == 0
}

test_banned_terms_one_reason_per_term if {
	reasons := content.deny with input as texts(["casino", "Casino!", "payday loan offers"])
		with data.sendgate.params.content.banned_terms as ["casino", "payday loan"]
		with data.sendgate.params.content.prohibited_commerce as {}
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
		with data.sendgate.params.content.allowed_domains as {"example.com": true}
	{r.host | some r in reasons} == {"evil.com", "example.com.evil.com"}
	every r in reasons {
		r.rule == "content.url_domain"
		r.allowed == ["example.com"]
	}
}

test_allowlist_passes_domain_and_subdomains if {
	reasons := content.deny with input as urls(["https://example.com", "www.example.com/x", "https://shop.Example.com:443/y"])
		with data.sendgate.params.content.allowed_domains as {"example.com": true}
	count(reasons) == 0
}

test_allowlisted_shortener_still_denied if {
	reasons := content.deny with input as urls(["https://bit.ly/x"])
		with data.sendgate.params.content.allowed_domains as {"bit.ly": true}
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
		with data.sendgate.params.content.banned_terms as ["casino", "payday loan", "firearms"]
	{r.term | some r in reasons} == {"casino", "payday loan"}
}

test_banned_phrase_not_across_texts if {
	reasons := content.deny with input as texts(["Want to buy", "followers?"])
	count(reasons) == 0
}

test_banned_phrase_across_line_break_in_one_text if {
	reasons := content.deny with input as texts(["Want to buy\nfollowers?"])
	fx.only(reasons, "content.banned_term").term == "buy followers"
}

# The data the rules match against must be written normalized, as the gateway
# normalizes the message: these tests run whenever the gateway loads the
# policies, so a term or domain that could never match is rejected there.
test_data_banned_terms_are_normalized if {
	terms := data.sendgate.params.content.banned_terms
	is_array(terms)
	every term in terms {
		content.normalized_term(term)
	}
}

test_data_domain_lists_are_objects_of_normalized_domains if {
	every name in ["shortener_domains", "allowed_domains"] {
		domains := data.sendgate.params.content[name]
		is_object(domains)
		every domain, listed in domains {
			content.normalized_domain(domain)
			listed == true
		}
	}
}

test_data_banned_terms_are_each_detected if {
	every term in data.sendgate.params.content.banned_terms {
		reasons := content.deny with input as texts([sprintf("Offer: %s!", [upper(term)])])
		fx.only(reasons, "content.banned_term").term == term
	}
}

test_normalized_term if {
	content.normalized_term("casino")
	content.normalized_term("real money gambling")
	content.normalized_term("ação 2")
	not content.normalized_term("Casino")
	not content.normalized_term("-casino-")
	not content.normalized_term("payday  loan")
	not content.normalized_term(" casino")
	not content.normalized_term("")
	not content.normalized_term(7)
}

test_normalized_domain if {
	content.normalized_domain("bit.ly")
	content.normalized_domain("t.co")
	not content.normalized_domain("Bit.ly")
	not content.normalized_domain("www.example.com")
	not content.normalized_domain("bit.ly.")
	not content.normalized_domain("https://bit.ly")
	not content.normalized_domain("bit.ly/x")
	not content.normalized_domain("")
}

test_banned_term_from_words_fact if {
	inp := fx.text({"message": {"texts": ["x"], "words": " hello \n cheap fake reviews here "}})
	reasons := content.deny with input as inp
	fx.only(reasons, "content.banned_term").term == "fake reviews"
}

test_banned_term_not_in_an_empty_text if {
	reasons := content.deny with input as texts(["", "!!", "hello"])
	count(reasons) == 0
}

test_no_words_fact_passes if {
	reasons := content.deny with input as fx.text({"message": {"words": ""}})
	count(reasons) == 0
}

test_banned_term_in_last_and_first_text if {
	reasons := content.deny with input as texts(["buy likes", "ok", "fake reviews"])
	{r.term | some r in reasons} == {"buy likes", "fake reviews"}
	fx.ids(reasons) == {"content.banned_term"}
}

test_shortener_from_links_fact if {
	link := {"url": "https://a.b.tiny.cc/x", "host": "a.b.tiny.cc", "domains": ["a.b.tiny.cc", "b.tiny.cc", "tiny.cc", "cc"]}
	reasons := content.deny with input as fx.text({"message": {"links": [link]}})
	r := fx.only(reasons, "content.url_domain")
	r.domain == "tiny.cc"
	r.host == "a.b.tiny.cc"
	r.url == "https://a.b.tiny.cc/x"
}

test_shortener_listed_false_is_not_a_shortener if {
	reasons := content.deny with input as urls(["https://bit.ly/x"])
		with data.sendgate.params.content.shortener_domains as {"bit.ly": false}
	count(reasons) == 0
}

test_allowlist_lists_domains_sorted if {
	reasons := content.deny with input as urls(["https://evil.com/x"])
		with data.sendgate.params.content.allowed_domains as {"example.org": true, "example.com": true}
	r := fx.only(reasons, "content.url_domain")
	r.allowed == ["example.com", "example.org"]
	contains(r.message, "(example.com, example.org)")
}

test_allowlist_no_links_passes if {
	reasons := content.deny with input as fx.text_input
		with data.sendgate.params.content.allowed_domains as {"example.com": true}
	count(reasons) == 0
}

test_length_several_entries if {
	reasons := content.deny with input as limited([
		{"field": "image.caption", "kind": "caption", "length": 1025},
		{"field": "text.body", "kind": "body", "length": 10},
	])
	fx.only(reasons, "content.length").field == "image.caption"
}

# --- prohibited commerce -------------------------------------------------------

test_prohibited_commerce_names_the_category if {
	reasons := content.deny with input as texts(["Premium VODKA delivered tonight"])
	r := fx.only(reasons, "content.prohibited_commerce")
	r.category == "alcohol"
	r.term == "vodka"
	contains(r.message, "alcohol")
	contains(r.message, "vodka")
}

test_prohibited_commerce_category_with_underscore_reads_as_words if {
	reasons := content.deny with input as texts(["Payday loans, approved in minutes"])
	r := fx.only(reasons, "content.prohibited_commerce")
	r.category == "deceptive_financial"
	contains(r.message, "deceptive financial")
}

test_prohibited_commerce_one_reason_per_category_and_term if {
	reasons := content.deny with input as texts(["casino and firearms", "Casino!"])
	{[r.category, r.term] | some r in reasons} == {["gambling", "casino"], ["weapons", "firearms"]}
	count(reasons) == 2
}

test_prohibited_commerce_word_boundaries if {
	reasons := content.deny with input as texts(["The casinoroyale hotel", "vaporizer for essential oils", "Winery tour"])
	count(reasons) == 0
}

test_prohibited_commerce_not_across_texts if {
	reasons := content.deny with input as texts(["sports", "betting"])
	count(reasons) == 0
}

test_prohibited_commerce_from_data if {
	inp := texts(["Fresh durian today"])
	hit := content.deny with input as inp with data.sendgate.params.content.prohibited_commerce as {"durian": "smelly_fruit"}
	miss := content.deny with input as inp with data.sendgate.params.content.prohibited_commerce as {}
	r := fx.only(hit, "content.prohibited_commerce")
	r.category == "smelly_fruit"
	count(miss) == 0
}

test_prohibited_commerce_blank_term_ignored if {
	reasons := content.deny with input as texts(["hello"]) with data.sendgate.params.content.prohibited_commerce as {"": "x"}
	count(reasons) == 0
}

test_prohibited_commerce_no_words_passes if {
	reasons := content.deny with input as fx.text({"message": {"words": ""}})
	count(reasons) == 0
}

# Terms and category names in data are normalized (a reload refuses others), every
# term is found on its own, and the one regex over all of them compiles.
test_data_prohibited_commerce_is_normalized if {
	every term, category in data.sendgate.params.content.prohibited_commerce {
		content.normalized_term(term)
		regex.match(`^[a-z][a-z0-9_]*$`, category)
	}
}

# One evaluation over a text per term (main_test's decision tests re-evaluate
# every test rule on regorus, so a test here evaluates content.deny once).
test_data_prohibited_commerce_terms_are_each_detected if {
	terms := data.sendgate.params.content.prohibited_commerce
	reasons := content.deny with input as texts([concat("", ["Offer: ", term, "!"]) | some term, _ in terms])
	found := {[r.term, r.category] | some r in reasons; r.rule == "content.prohibited_commerce"}
	every term, category in terms {
		[term, category] in found
	}
}

test_data_prohibited_commerce_pattern_compiles if {
	terms := object.keys(data.sendgate.params.content.prohibited_commerce)
	regex.is_valid(concat("", [" (?:", concat("|", terms), ") "]))
}

test_data_prohibited_commerce_covers_meta_categories if {
	categories := {c | some c in data.sendgate.params.content.prohibited_commerce}
	every c in {"alcohol", "tobacco", "drugs", "weapons", "adult", "gambling"} {
		c in categories
	}
}

# --- card numbers and IBANs ------------------------------------------------------

card(network) := {"masked": "**** **** **** 1111", "last4": "1111", "length": 16, "network": network}

test_card_number_with_a_network_fires if {
	reasons := content.deny with input as fx.text({"message": {"card_numbers": [card("visa")]}})
	r := fx.only(reasons, "content.card_number")
	r.network == "visa"
	r.last4 == "1111"
	r.masked == "**** **** **** 1111"
	contains(r.message, "(visa, ending 1111)")
	not contains(r.message, "4111")
}

test_card_number_without_a_network_only_when_configured if {
	inp := fx.text({"message": {"card_numbers": [card(null)]}})
	default_data := content.deny with input as inp
	all_numbers := content.deny with input as inp with data.sendgate.params.content.card_numbers.networks_only as false
	count(default_data) == 0
	r := fx.only(all_numbers, "content.card_number")
	r.network == null
	contains(r.message, "(no known card network, ending 1111)")
}

test_no_card_numbers_passes if {
	reasons := content.deny with input as fx.text({"message": {"card_numbers": []}})
	count(reasons) == 0
}

test_iban_fires if {
	iban := {"masked": "**** **** **** **** **30 00", "country": "DE", "last4": "3000"}
	reasons := content.deny with input as fx.text({"message": {"ibans": [iban]}})
	r := fx.only(reasons, "content.iban")
	r.country == "DE"
	r.masked == iban.masked
	contains(r.message, "DE, ending 3000")
}

test_card_and_iban_in_a_template_too if {
	iban := {"masked": "**************4300", "country": "NL", "last4": "4300"}
	reasons := content.deny with input as fx.tmpl({"message": {"card_numbers": [card("mastercard")], "ibans": [iban]}})
	fx.ids(reasons) == {"content.card_number", "content.iban"}
}
