"""Hypothesis strategies for policy input documents (docs/input.md), edge cases included.

The `message` part is a Cloud API send body run through the gateway's own
`normalize()`, so its shape (texts, words, links, limited_texts, components) is
exactly what the gateway builds. The facts around it (clock, account, consent,
window, history, catalog, local time) are drawn directly, leaning on the
boundaries the rules test: cap limits and their windows, the 24-hour window, the
pair-rate interval, the quiet-hour edges, Meta's length caps and interactive limits, card numbers
and IBANs, and absent facts
(null) everywhere a fact may be absent.
"""

from __future__ import annotations

from typing import Any

from hypothesis import assume
from hypothesis import strategies as st

from sendgate.facts import link_extension
from sendgate.messages import InvalidMessage, normalize

NOW = 1795557600.0  # 2026-11-24 22:00 UTC
WINDOW = 86400
DAY, WEEK = 86400, 604800
PAIR, PAIR_BURST = 6, 5  # the default pair rate: interval, burst

BANNED = ["firearms", "casino", "buy followers", "payday loan", "fake id"]
WORDS = ["hello", "order", "ready", "table", "casino", "Casinos", "firearm", "buy", "followers", "loan", "sale",
         "ñandú", "café", "fake", "ID", "x"]
URLS = ["https://bit.ly/abc", "http://www.tinyurl.com/x", "https://go.bit.ly/y", "https://cdn.acme.example/a.png",
        "https://acme.example/promo?x=1", "https://t.co/z", "http://user:pw@BIT.ly:8080/q", "https://example.org/",
        "https://notbit.ly/x", "www.cutt.ly/a"]
# Media links whose extensions fit one kind, another, several, or none the data lists.
MEDIA_LINKS = ["https://cdn.acme.example/a.jpg", "https://cdn.acme.example/b.PDF?v=2", "https://cdn.acme.example/c.webp",
               "https://cdn.acme.example/d.mp4", "https://cdn.acme.example/e.gif", "https://cdn.acme.example/f.ogg",
               "https://cdn.acme.example/g.opus", "https://cdn.acme.example/h.php", "https://cdn.acme.example/noext"]
MEDIA_TYPES = ["image/jpeg", "image/png", "image/webp", "application/pdf", "video/mp4", "audio/ogg", "audio/opus",
               "text/plain", "video/3gpp", "Image/PNG"]
MB = 1024 * 1024
MEDIA_SIZES = [0, 100 * 1024, 100 * 1024 + 1, 500 * 1024, 500 * 1024 + 1, 5 * MB, 5 * MB + 1, 16 * MB, 16 * MB + 1,
               100 * MB, 100 * MB + 1]
TYPES = ["text", "image", "video", "audio", "document", "sticker", "location", "contacts", "interactive", "template",
         "reaction"]


def _around(center: float, spread: float = 2.0) -> st.SearchStrategy[float]:
    """Just before, at and just after a boundary (whole and fractional seconds)."""
    return st.one_of(
        st.sampled_from([center - 1, center - 0.5, center - 0.001, center, center + 0.001, center + 0.5, center + 1]),
        st.floats(center - spread, center + spread, allow_nan=False, allow_infinity=False),
    )


texts = st.one_of(
    st.lists(st.sampled_from(WORDS + BANNED), min_size=0, max_size=6).map(" ".join),
    st.builds(lambda w, u: f"{w} {u}", st.sampled_from(WORDS), st.sampled_from(URLS)),
    st.text(max_size=40),
    st.sampled_from(["a" * 4096, "a" * 4097, "b" * 1024, "b" * 1025, "Cheap FIREARMS!", "casino-night", "fake  id"]),
    # card numbers (a network's, and one with none), IBANs, prohibited commerce
    st.sampled_from(["Card 4111 1111 1111 1111 charged", "ref 1000000000009", "amex 378282246310005",
                     "IBAN DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "vodka delivery tonight",
                     "Payday loans!", "4111 1111 1111 1112"]),
)

# Template parameter texts at Meta's edges: a newline, a tab, 4 and 5 spaces, empty, the
# authentication code's 15/16 characters, the header's 60/61.
PARAM_TEXTS = st.one_of(
    texts,
    st.sampled_from(["", " ", "two\nlines", "a\tb", "four    ok", "five     no", "1" * 15, "1" * 16, "h" * 60, "h" * 61]),
)

# The catalog's components (templates.details): header formats, texts with positional and
# named placeholders, body-only templates, a body near 1,024 characters once filled in.
CATALOG_COMPONENTS = st.fixed_dictionaries({
    "header": st.one_of(
        st.none(),
        st.sampled_from([{"format": "TEXT", "text": "Hi {{1}}", "parameter_names": ["1"]},
                         {"format": "IMAGE", "text": None, "parameter_names": []},
                         {"format": "VIDEO", "text": None, "parameter_names": []}]),
    ),
    "body": st.one_of(
        st.none(),
        st.sampled_from([
            {"text": "Hello {{1}}, {{2}} off", "parameter_names": ["1", "2"], "fixed_length": 12,
             "placeholder_counts": {"1": 1, "2": 1}},
            {"text": "Hi {{first_name}}", "parameter_names": ["first_name"], "fixed_length": 3,
             "placeholder_counts": {"first_name": 1}},
            {"text": "x" * 1010 + " {{1}} {{1}}", "parameter_names": ["1"], "fixed_length": 1012,
             "placeholder_counts": {"1": 2}},
            {"text": None, "parameter_names": [], "fixed_length": None, "placeholder_counts": {}},
        ]),
    ),
    "footer": st.one_of(st.none(), st.just({"text": "Reply STOP"})),
    "buttons": st.sampled_from([[], [{"index": "0", "type": "URL"}]]),
})


@st.composite
def interactive_bodies(draw: st.DrawFn, text: str) -> dict[str, Any]:
    """Interactive messages around Meta's limits (payload.rego): lengths at and over each cap,
    0 to 4 reply buttons (duplicates too), lists of up to 11 sections and rows."""
    kind = draw(st.sampled_from(["button", "list", "cta_url"]))
    near = st.sampled_from([1, 19, 20, 21, 24, 25, 60, 61, 72, 73])
    body: dict[str, Any] = {"type": kind, "body": {"text": draw(st.sampled_from([text or "Pick", "b" * 1024, "b" * 1025]))}}
    if draw(st.booleans()):
        body["header"] = {"type": "text", "text": "h" * draw(near)}
    if draw(st.booleans()):
        body["footer"] = {"text": "f" * draw(near)}
    if kind == "button":
        ids = draw(st.lists(st.sampled_from(["yes", "no", "later", "x" * 257]), max_size=4))
        body["action"] = {"buttons": [{"type": "reply", "reply": {"id": i, "title": "t" * draw(near)}} for i in ids]}
    elif kind == "list":
        sections = [{"title": "s" * draw(near),
                     "rows": [{"id": f"r{i}{j}", "title": "r" * draw(near), "description": "d" * draw(near)}
                              for j in range(draw(st.integers(1, 4)))]}
                    for i in range(draw(st.sampled_from([1, 2, 3, 10, 11])))]
        body["action"] = {"button": "o" * draw(near), "sections": sections}
    else:
        body["action"] = {"name": "cta_url", "parameters": {"display_text": "c" * draw(near), "url": "https://acme.example/x"}}
    return body


@st.composite
def send_bodies(draw: st.DrawFn, message_type: str) -> dict[str, Any]:
    to = draw(st.sampled_from(["16505551234", "+1 (650) 555-1234", "5511987654321", "919876543210", "447700900123",
                               "US.13491208655302741918"]))
    body: dict[str, Any] = {"messaging_product": "whatsapp", "to": to, "type": message_type}
    if draw(st.booleans()):
        body["context"] = {"message_id": "wamid.ABC"}
    text = draw(texts)
    if message_type == "text":
        body["text"] = {"body": text or "hi", "preview_url": draw(st.booleans())}
    elif message_type in ("image", "video", "document"):
        media: dict[str, Any] = {"link": draw(st.sampled_from(URLS + MEDIA_LINKS))} if draw(st.booleans()) else {"id": "123"}
        if draw(st.booleans()):
            media["caption"] = text
        body[message_type] = media
    elif message_type in ("audio", "sticker"):
        body[message_type] = {"link": draw(st.sampled_from(MEDIA_LINKS))} if draw(st.booleans()) else {"id": "456"}
    elif message_type == "location":
        coordinate = st.sampled_from([0, 1.5, 89.999999, 90, 90.000001, -90, -91, 179.5, 180, 180.5, -180, -181])
        body["location"] = {"latitude": draw(coordinate), "longitude": draw(coordinate), "name": text,
                            "address": draw(texts)}
    elif message_type == "contacts":
        body["contacts"] = [{"name": {"formatted_name": text or "Ana"}, "urls": [{"url": draw(st.sampled_from(URLS))}]}]
    elif message_type == "interactive":
        body["interactive"] = draw(interactive_bodies(text))
    elif message_type == "reaction":
        body["reaction"] = {"message_id": "wamid.ABC", "emoji": "👍"}
    if message_type in ("text", "interactive") and draw(st.integers(0, 3)) == 0:
        # Direct Send: a category (refused by normalize unless utility/authentication), maybe a TTL
        body["category"] = draw(st.sampled_from(["utility", "authentication", "Utility"]))
        if draw(st.booleans()):
            body["ttl_seconds"] = draw(st.sampled_from([29, 30, 600, 900, 901, 43200, 43201]))
        if draw(st.booleans()):
            del body["to"]
            body["recipient"] = "US.13491208655302741918"
    if message_type == "template":
        name = draw(st.sampled_from(["order_update", "spring_sale", "hello_world", "missing"]))
        components = []
        for kind in draw(st.lists(st.sampled_from(["header", "body", "button"]), max_size=3, unique=True)):
            params: list[dict[str, Any]] = [{"type": "text", "text": draw(PARAM_TEXTS)} for _ in range(draw(st.integers(0, 3)))]
            for param in params:
                if draw(st.integers(0, 3)) == 0:
                    param["parameter_name"] = draw(st.sampled_from(["first_name", "1", "code"]))
            if kind == "header" and draw(st.integers(0, 2)) == 0:
                kind_sent = draw(st.sampled_from(["image", "video", "document"]))
                params[:] = [{"type": kind_sent, kind_sent: {"link": "https://cdn.acme.example/a.png"}}]
            component: dict[str, Any] = {"type": kind, "parameters": params}
            if kind == "button":
                component.update(sub_type="url", index=draw(st.sampled_from([0, 1, "0"])))
                params[:] = [{"type": "text", "text": draw(st.sampled_from(URLS))}] * len(params)
            components.append(component)
        template: dict[str, Any] = {"name": name, "language": {"code": draw(st.sampled_from(["en_US", "pt_BR", "de"]))}}
        if components or draw(st.booleans()):
            template["components"] = components
        body["template"] = template
    return body


@st.composite
def messages(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """(endpoint, normalized message)."""
    kind = draw(st.sampled_from(["send"] * 12 + ["status", "encrypted", "marketing"]))
    if kind == "status":
        body: dict[str, Any] = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.X"}
        if draw(st.booleans()):
            body["typing_indicator"] = {"type": "text"}
        endpoint = "messages"
    elif kind == "encrypted":
        body = {"messaging_product": "whatsapp", "encrypted_contents": "eyJ.x.y"}
        if draw(st.booleans()):
            body["to"] = "16505551234"
        endpoint = "messages_encrypted"
    elif kind == "marketing":
        body, endpoint = draw(send_bodies("template")), "marketing_messages"
    else:
        body, endpoint = draw(send_bodies(draw(st.sampled_from(TYPES)))), "messages"
    try:
        return endpoint, normalize(body, endpoint)
    except InvalidMessage:
        assume(False)
        raise  # unreachable


def _time_or_null(draw: st.DrawFn, now: float, boundaries: list[float]) -> float | None:
    choice = draw(st.sampled_from(["null", "boundary", "any"]))
    if choice == "null":
        return None
    if choice == "boundary":
        return now - draw(_around(draw(st.sampled_from(boundaries))))
    return now - draw(st.floats(0, 40 * DAY, allow_nan=False))


def _pair_history(draw: st.DrawFn, now: float) -> list[float] | None:
    """`history.pair_sent_at`, newest first: short lists (most recipients), bursts around the
    default bucket's edges (PAIR_BURST sends, k intervals back), and full lists of 64 (cut)."""
    kind = draw(st.sampled_from(["null", "short", "burst", "burst", "full"]))
    if kind == "null":
        return None
    if kind == "full":
        spacing = draw(st.sampled_from([PAIR - 0.1, float(PAIR), 0.5, 60.0]))
        start = draw(_around(1.0))
        return [now - start - spacing * k for k in range(64)]
    size = draw(st.integers(0, PAIR_BURST - 1)) if kind == "short" else draw(st.integers(PAIR_BURST, PAIR_BURST + 4))
    ago = st.one_of(*[_around(PAIR * k) for k in range(0, 5)], st.floats(0, 3600, allow_nan=False))
    return sorted((now - draw(ago) for _ in range(size)), reverse=True)  # a few in the future: clock skew


@st.composite
def _counted(draw: st.DrawFn, window: float, same_content: bool = False) -> dict[str, Any] | None:
    """A counter's fact (gateway/counting.py): null (not counted), admitted, or refused with an
    exact wait around the second's edges."""
    if draw(st.integers(0, 2)) == 0:
        return None
    limit = draw(st.sampled_from([1, 20, 80, 250]))
    admitted = draw(st.booleans())
    wait = 0.0 if admitted else draw(st.one_of(st.sampled_from([0.001, 0.25, 0.999, 1.0, 1.5, window]),
                                               st.floats(0.0001, window, allow_nan=False)))
    fact: dict[str, Any] = {"limit": limit, "window_seconds": window, "admitted": admitted,
                            "count": limit if not admitted else draw(st.integers(1, limit)),
                            "retry_after": wait, "retry_after_ms": -(-round(wait * 1e6) // 1000)}
    if same_content:
        fact.update(hash="0123456789abcdef", category=draw(st.sampled_from(["MARKETING", "UTILITY", "SERVICE"])),
                    threshold=draw(st.sampled_from(["category", "vetted", "low_quality"])))
    return fact


@st.composite
def _media_facts(draw: st.DrawFn, media: dict[str, Any]) -> dict[str, Any]:
    """`message.media` as facts.py extends it: the catalog's facts for an id, sometimes known."""
    known = media.get("id") is not None and draw(st.booleans())
    return {
        **media,
        "extension": link_extension(media.get("link")),
        "known": known,
        "mime_type": draw(st.sampled_from(MEDIA_TYPES + [None])) if known else None,
        "declared_type": draw(st.sampled_from(MEDIA_TYPES + [None])) if known else None,
        "size": draw(st.sampled_from(MEDIA_SIZES + [None])) if known else None,
        "animated": draw(st.sampled_from([None, True, False])) if known else None,
    }


@st.composite
def input_documents(draw: st.DrawFn) -> dict[str, Any]:
    now = draw(st.one_of(st.just(NOW), st.floats(1.7e9, 1.9e9, allow_nan=False),
                         st.integers(1_700_000_000, 1_900_000_000).map(float)))
    endpoint, message = draw(messages())
    recipient_id = message.get("recipient")
    known = draw(st.booleans()) or draw(st.booleans())
    account = {
        "phone_number_id": draw(st.sampled_from(["106540352242922", "106540352242999"])),
        "known": known,
        "waba_id": "102290129340398" if known else None,
        "name": draw(st.sampled_from(["Acme", None])) if known else None,
        "markets": draw(st.sampled_from([None, ["US", "BR"], ["us"], [], ["GB", "IN"]])) if known else None,
        "quality": draw(st.sampled_from([None, "GREEN", "YELLOW", "RED"])),
        "status": draw(st.sampled_from([None, "CONNECTED", "FLAGGED", "RESTRICTED"])),
        "marketing_paused": draw(st.sampled_from([None, {"alert": "operator", "message": "paused",
                                                         "since": NOW - 60}])),
        "direct_send": known and draw(st.booleans()),
        "restrictions": draw(st.sampled_from([
            [], [{"type": "RESTRICTED_BIZ_INITIATED_MESSAGING", "expires_at": now + 60}],
            [{"type": "RESTRICTED_CUSTOMER_INITIATED_MESSAGING", "expires_at": None}],
            [{"type": "RESTRICTED_ADD_PHONE_NUMBER_ACTION", "expires_at": now + 60},
             {"type": "RESTRICTED_BIZ_INITIATED_MESSAGING", "expires_at": now - 1}],
        ])),
        "portfolio": "102290129340398" if known else None,
        "messaging_limit": draw(st.sampled_from([None, 250, 2000, -1])),
        "throughput_mps": draw(st.sampled_from([80, 20, 1000])),
        "throughput": draw(_counted(1.0)),
        "reach": draw(_counted(86400.0)),
        "same_content": draw(_counted(60.0, same_content=True)),
    }
    if message.get("media") is not None:
        message = {**message, "media": draw(_media_facts(message["media"]))}
    recipient: dict[str, Any] | None = None
    if recipient_id is not None and not message.get("is_status"):
        zone = draw(st.sampled_from([("US", "America/Los_Angeles"), ("BR", "America/Sao_Paulo"), ("IN", "Asia/Kolkata"),
                                     ("us", "America/New_York"), ("CA", "America/Toronto"), (None, None)]))
        local_time = None
        if zone[1] is not None and draw(st.integers(0, 9)) > 0:
            hour, minute = draw(st.one_of(
                st.sampled_from([(20, 59), (21, 0), (21, 1), (7, 59), (8, 0), (8, 1), (0, 0), (23, 59), (12, 0)]),
                st.tuples(st.integers(0, 23), st.integers(0, 59)),
            ))
            local_time = {"hour": hour, "minute": minute, "weekday": draw(st.integers(0, 6))}
        consent = draw(st.one_of(
            st.none(),
            st.builds(
                lambda status, cats, source, at: {"status": status, "categories": cats, "source": source,
                                                  "updated_at": at},
                st.sampled_from(["opted_in", "opted_out"]),
                st.lists(st.sampled_from(["marketing", "utility", "authentication", "Marketing"]), max_size=3,
                         unique=True),
                st.sampled_from(["web-form", None]),
                st.sampled_from([now - DAY, now - 0.5]),
            ),
        ))
        marketing = draw(st.one_of(
            st.none(),
            st.lists(st.one_of(_around(DAY).map(lambda d: now - d), _around(WEEK).map(lambda d: now - d),
                               st.floats(0, 30 * DAY, allow_nan=False).map(lambda d: now - d)), max_size=4),
        ))
        if marketing is not None:
            marketing.sort(reverse=True)  # newest first, as the store gives them
        if draw(st.integers(0, 5)) > 0:
            pair = _pair_history(draw, now)
            outside = None if marketing is None else [t for t in marketing if draw(st.booleans())]
            history = {"last_sent_at": pair[0] if pair else _time_or_null(draw, now, [3600.0, DAY]),
                       "pair_sent_at": pair, "marketing_sent_at": marketing,
                       "marketing_outside_window_sent_at": outside}
        else:
            history = {"last_sent_at": None, "pair_sent_at": None, "marketing_sent_at": None,
                       "marketing_outside_window_sent_at": None}
        recipient = {
            "id": recipient_id,
            "country": zone[0],
            "timezone": zone[1],
            "local_time": local_time,
            "consent": consent,
            "last_inbound_at": _time_or_null(draw, now, [WINDOW, 0.0, 60.0]),
            "history": history,
            "delivery_failures": draw(st.sampled_from([
                [], [{"code": 131049, "at": now - 3600}], [{"code": 131049, "at": now - DAY}],
                [{"code": 131026, "at": now - 60 * k} for k in range(1, 4)],
                [{"code": 131026, "at": now - 60}, {"code": 131026, "at": now - 120}],
                [{"code": 131049, "at": now - 10}] + [{"code": 131026, "at": now - WEEK + 30 * k} for k in range(3)],
            ])),
            "free_entry_point_at": _time_or_null(draw, now, [3 * DAY]),
        }
    template_facts = None
    template = message.get("template")
    if template is not None:
        found = draw(st.booleans()) or draw(st.booleans())
        language_found = found and draw(st.integers(0, 4)) > 0
        placeholders = draw(st.one_of(
            st.none(),
            st.fixed_dictionaries({"header": st.integers(0, 2), "body": st.integers(0, 3)},
                                  optional={"button_0": st.integers(0, 1), "button_1": st.just(1)}),
        ))
        if placeholders is None and found and draw(st.booleans()):
            placeholders = {}
        template_facts = {
            "found": found,
            "language_found": language_found,
            "languages": draw(st.sampled_from([["en_US"], ["en_US", "pt_BR"], []])) if found else [],
            "status": draw(st.sampled_from(["APPROVED", "PAUSED", "PENDING", "REJECTED", "DISABLED"]))
            if language_found else None,
            "category": draw(st.sampled_from(["MARKETING", "UTILITY", "AUTHENTICATION", "marketing"]))
            if language_found else None,
            "placeholders": placeholders if language_found else {},
            # The catalog facts the parameter and status rules read (templates.details).
            "quality": draw(st.sampled_from(["GREEN", "YELLOW", "RED", "UNKNOWN", None])) if language_found else None,
            "flagged": language_found and draw(st.booleans()),
            "flagged_until": _time_or_null(draw, now, [-3600.0, 3600.0]) if language_found else None,
            "locked": language_found and draw(st.booleans()),
            "parameter_format": draw(st.sampled_from(["POSITIONAL", "NAMED", None])) if language_found else None,
            "components": draw(CATALOG_COMPONENTS) if language_found else None,
        }
    return {
        "now": now,
        "endpoint": endpoint,
        "api_version": "v23.0",
        "gateway": {"mode": draw(st.sampled_from(["enforce", "shadow"])),
                    "allow_unknown_accounts": draw(st.booleans())},
        "account": account,
        "message": message,
        "recipient": recipient,
        "template": template_facts,
    }


# Facts a send passes every rule with (a coherent, allowed case), by path; near_allowed_documents
# keeps a few of the drawn facts and sets the others to these.
def _benign(document: dict[str, Any]) -> dict[tuple[str, ...], Any]:
    now = document["now"]
    message = document["message"]
    facts: dict[tuple[str, ...], Any] = {
        ("gateway", "mode"): "enforce",
        ("account", "known"): True, ("account", "waba_id"): "102290129340398", ("account", "name"): "Acme",
        ("account", "markets"): ["US", "BR"], ("account", "quality"): "GREEN", ("account", "status"): "CONNECTED",
        ("account", "marketing_paused"): None, ("account", "restrictions"): [],
        ("account", "portfolio"): "102290129340398", ("account", "messaging_limit"): None,
        ("account", "throughput_mps"): 1000, ("account", "throughput"): None, ("account", "reach"): None,
        ("account", "same_content"): None,
        ("account", "direct_send"): isinstance(message.get("category"), str),
    }
    if isinstance(document.get("recipient"), dict):
        facts.update({
            ("recipient", "country"): "BR", ("recipient", "timezone"): "America/Sao_Paulo",
            ("recipient", "local_time"): {"hour": 12, "minute": 0, "weekday": 2},
            ("recipient", "consent"): {"status": "opted_in", "categories": ["marketing", "utility", "authentication"],
                                       "source": "web-form", "updated_at": now - DAY},
            ("recipient", "last_inbound_at"): now - 60,
            ("recipient", "history"): {"last_sent_at": None, "pair_sent_at": [], "marketing_sent_at": [],
                                       "marketing_outside_window_sent_at": []},
            ("recipient", "delivery_failures"): [], ("recipient", "free_entry_point_at"): None,
        })
    template = message.get("template")
    if isinstance(document.get("template"), dict) and isinstance(template, dict):
        sent = {c["key"]: c["parameter_count"] for c in template.get("components", []) if c.get("parameter_count")}
        facts.update({
            ("template", "found"): True, ("template", "language_found"): True,
            ("template", "languages"): [template.get("language")], ("template", "status"): "APPROVED",
            ("template", "placeholders"): {"body": 0, **sent}, ("template", "quality"): "GREEN",
            ("template", "flagged"): False, ("template", "flagged_until"): None, ("template", "locked"): False,
            ("template", "parameter_format"): None, ("template", "components"): None,
        })
    return facts


@st.composite
def near_allowed_documents(draw: st.DrawFn) -> dict[str, Any]:
    """input_documents() with every fact but a drawn few set to one a send passes with.

    Most generated documents break several rules at once, so they are denied whatever one rule
    answers; here most are allowed or broken by one or two facts, which is where a rule that
    answers wrongly changes the decision.
    """
    document = draw(input_documents())
    benign = _benign(document)
    paths = sorted(benign)
    kept = set(draw(st.lists(st.sampled_from(paths), max_size=2, unique=True)))
    for path in paths:
        if path not in kept:
            document[path[0]] = {**document[path[0]], path[1]: benign[path]}
    return document
