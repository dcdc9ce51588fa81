"""Turn a Cloud API send body into the `message` object of the policy input (docs/input.md).

`normalize(payload, endpoint)` validates the parsed JSON body of a call to
`/messages`, `/marketing_messages` or `/messages_encrypted` and extracts the
facts the policies judge: who it goes to, what kind of message it is, every
text a recipient can read, every URL it carries, the length-capped texts, the
media, and the template components. A body that is not a send payload raises
`InvalidMessage` whose text names the JSON path at fault; the gateway answers
it with Graph error code 100 before anything reaches Meta.

What counts as a text (`texts`, in the order they appear in the message):
every string the recipient sees. That is `text.body`; media captions; document
filenames (WhatsApp prints the filename on the document bubble, so a term
hidden in it is as visible as one in a caption); interactive header text,
`body.text` and `footer.text`; reply-button titles, the list button label,
section titles, row titles and descriptions; `display_text` (cta_url,
voice_call) and `flow_cta`; order item names and order/discount/shipping/tax
descriptions of order_details and order_status; carousel card texts; location
name and address; contact names, organisation, addresses, phone numbers,
e-mail addresses and birthday; template parameter texts in header and body
components (`text`, the `fallback_value` of currency and date_time, a
location header's name and address, a document header's filename) and
`coupon_code` values. Empty strings are left out.

Not texts: reaction emoji; ids, tokens and quick-reply payloads; template
names; contact `urls` (they go to `urls`); and the `text` parameters of
template *button* components. Those are URL suffixes (or, in some of Meta's
own examples, junk such as `true`) appended to a URL the template's catalog
entry already fixes, so they are scanned for URLs but never shown as text.

What counts as a URL (`urls`, deduplicated, first occurrence first): every
`link` and `url` string anywhere in the message content (media, interactive
headers, cta_url, contact `urls`, template media parameters, carousel cards);
every URL found inside a text or a template button parameter: `http(s)://…`,
`www.…`, and bare `domain.tld[/path]` forms such as `bit.ly/abc`; and any
`http(s)://` or `www.` URL inside any other string of the content (for example
Flow payload data). URLs are reported as written, minus trailing punctuation.

`limited_texts` lists the texts Meta caps in length: `text.body` (kind
"body", 4096) and image/video/document captions (kind "caption", 1024),
with their length in characters (code points).

`interactive` (interactive messages) holds what Meta caps in them: each capped field
with its length in characters (header text, body, footer, reply-button titles and ids,
the list button label, section titles, row titles, descriptions and ids, the cta_url
display text), the number of reply buttons, sections and rows, and the reply-button ids
and titles sent more than once. `location` holds a location message's coordinates as
numbers. Whether they break a limit is for the policies (payload.rego) to say; only a
value of the wrong JSON type is refused here.

`card_numbers` and `ibans` are the payment card numbers (Luhn-checked) and IBANs
(mod-97-checked) in the texts, masked to their last 4 digits; they are masked in every
other fact too (texts, words, URLs, template parameters), see sendgate/sensitive.py.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

from sendgate.sensitive import find as find_sensitive
from sendgate.sensitive import mask_sensitive
from sendgate.sensitive import may_hold as may_hold_sensitive

__all__ = [
    "DIRECT_SEND_CATEGORIES", "DIRECT_SEND_TYPES", "ENDPOINTS", "MESSAGE_TYPES", "InvalidMessage", "links", "normalize",
    "normalize_recipient", "words",
]  # fmt: skip


class InvalidMessage(ValueError):
    """The body is not a Cloud API send payload. str(e) is a precise, user-facing reason (becomes a Graph error code 100)."""


MESSAGE_TYPES: frozenset[str] = frozenset(
    {
        "text",
        "image",
        "video",
        "audio",
        "document",
        "sticker",
        "location",
        "contacts",
        "interactive",
        "template",
        "reaction",
    }
)
ENDPOINTS: frozenset[str] = frozenset({"messages", "marketing_messages", "messages_encrypted"})

_MEDIA_TYPES = frozenset({"image", "video", "audio", "document", "sticker"})
_CAPTIONED = frozenset({"image", "video", "document"})  # audio and stickers have no caption
_RECIPIENT_TYPES = ("individual", "group")

# --- URL detection --------------------------------------------------------------------------

# Characters that never occur unescaped in a URL as people write it.
_URL_CHARS = r"[^\s<>\"'`{}|\\^]"
# "(?<![^\W_])": not glued to a letter or digit, but "_" may precede (WhatsApp italics).
_SCHEME_URL = re.compile(rf"(?i)(?<![^\W_])(?:https?://|www\.){_URL_CHARS}+")
# A bare host: dot-separated labels and an alphabetic TLD, optional port and path. The
# look-behind keeps the host part of an e-mail address (or of a longer word) out.
_BARE_URL = re.compile(
    r"(?i)(?<![^\W_])(?<![@./:-])"
    r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?P<tld>[a-z]{2,24})"
    rf"(?P<rest>(?::\d{{1,5}})?(?:/{_URL_CHARS}*)?)"
    r"(?![^\W_]|[@-])"
)
# Bare hosts only count with a real TLD, so "report.pdf" or "v1.final" stay text. Country
# codes plus the generic TLDs that show up in messages (and in spam). "zip" and "mov" are
# real TLDs but far more often file extensions in a caption, so they are left out.
_TLDS = frozenset(
    (
        "ac ad ae af ag ai al am ao aq ar as at au aw ax az ba bb bd be bf bg bh bi bj bl bm bn bo bq br "
        "bs bt bw by bz ca cc cd cf cg ch ci ck cl cm cn co cr cu cv cw cx cy cz de dj dk dm do dz ec ee "
        "eg eh er es et eu fi fj fk fm fo fr ga gb gd ge gf gg gh gi gl gm gn gp gq gr gs gt gu gw gy hk "
        "hn hr ht hu id ie il im in io iq ir is it je jm jo jp ke kg kh ki km kn kp kr kw ky kz la lb lc "
        "li lk lr ls lt lu lv ly ma mc md me mf mg mh mk ml mm mn mo mp mq mr ms mt mu mv mw mx my mz na "
        "nc ne nf ng ni nl no np nr nu nz om pa pe pf pg ph pk pl pm pn pr ps pt pw py qa re ro rs ru rw "
        "sa sb sc sd se sg sh si sj sk sl sm sn so sr ss st su sv sx sy sz ta tc td tf tg th tj tk tl tm "
        "tn to tr tt tv tw tz ua ug uk us uy uz va vc ve vg vi vn vu wf ws xk ye yt za zm zw "
        "com net org edu gov mil int info biz name pro mobi asia tel travel jobs aero coop museum "
        "xyz top online site shop store club live app dev page link click tech cloud icu vip win bid "
        "loan work buzz fun space website life world today news blog email money cash finance bet "
        "casino poker xxx porn sex adult wiki network digital agency company group media center "
        "support help care health ltd llc inc one art design codes guru ninja rocks lol cam cfd sbs "
        "quest monster rest bar host press fit gay shopping sale deals promo delivery ink"
    ).split()
)
_TRAILING = ".,;:!?'\"*_~"  # sentence punctuation and WhatsApp formatting marks
_CLOSERS = {")": "(", "]": "[", "}": "{", ">": "<"}


def _trim_url(url: str) -> str:
    # Drop trailing punctuation, and closing brackets that were not opened inside the URL
    # ("(see bit.ly/x)" -> "bit.ly/x", but ".../Foo_(bar)" keeps its parenthesis).
    while url:
        last = url[-1]
        if last in _TRAILING or (last in _CLOSERS and url.count(_CLOSERS[last]) < url.count(last)):
            url = url[:-1]
        else:
            break
    return url


def _find_urls(text: str, bare: bool = True) -> list[str]:
    """URLs written in free text, in order. bare=False finds only http(s):// and www. forms."""
    found: list[tuple[int, str]] = []
    for match in _SCHEME_URL.finditer(text):
        url = _trim_url(match.group())
        if url.lower() not in ("http://", "https://", "www."):
            found.append((match.start(), url))
    if bare:
        # Blank out the scheme URLs so their hosts are not found a second time.
        rest = _SCHEME_URL.sub(lambda m: " " * len(m.group()), text)
        for match in _BARE_URL.finditer(rest):
            tld, tail = match.group("tld"), match.group("rest")
            if tld.lower() not in _TLDS:
                continue
            if not tail and not (tld.islower() or tld.isupper()):
                continue  # "Thanks.So see you": a missing space after a full stop, not a host
            found.append((match.start(), _trim_url(match.group())))
    found.sort(key=lambda item: item[0])
    return [url for _, url in found if url]


# --- validation helpers ---------------------------------------------------------------------


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(value: object) -> str:
    """A short, quoted rendering of a client-supplied value for an error message."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > 40:
        text = text[:40] + "..."
    return repr(text) if isinstance(value, str) else text


def _kind(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


def _object(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidMessage(f"{path} must be an object, not {_kind(value)}")
    return value


def _opt_object(parent: dict[str, Any], key: str, path: str) -> dict[str, Any] | None:
    value = parent.get(key)
    return None if value is None else _object(value, _join(path, key))


def _req_object(parent: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    if parent.get(key) is None:
        raise InvalidMessage(f"{_join(path, key)} is required")
    return _object(parent[key], _join(path, key))


def _opt_list(parent: dict[str, Any], key: str, path: str) -> list[Any] | None:
    value = parent.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidMessage(f"{_join(path, key)} must be a list, not {_kind(value)}")
    return value


def _opt_str(parent: dict[str, Any], key: str, path: str) -> str | None:
    value = parent.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidMessage(f"{_join(path, key)} must be a string, not {_kind(value)}")
    return value


def _req_str(parent: dict[str, Any], key: str, path: str, non_empty: bool = False) -> str:
    value = _opt_str(parent, key, path)
    if value is None:
        raise InvalidMessage(f"{_join(path, key)} is required")
    if non_empty and not value.strip():
        raise InvalidMessage(f"{_join(path, key)} must not be empty")
    return value


def _objects(parent: dict[str, Any], key: str, path: str) -> list[tuple[str, dict[str, Any]]]:
    """The items of an optional list of objects, each with its JSON path."""
    items = _opt_list(parent, key, path) or []
    out = []
    for i, item in enumerate(items):
        item_path = f"{_join(path, key)}[{i}]"
        out.append((item_path, _object(item, item_path)))
    return out


# --- extraction -----------------------------------------------------------------------------


class _Content:
    """Accumulates texts, URLs and length-capped fields while a payload is walked."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.urls: list[str] = []
        self.limited: list[dict[str, Any]] = []
        self._seen: set[str] = set()

    def text(self, value: str | None, field: str | None = None, kind: str | None = None) -> None:
        if value is None:
            return
        if kind is not None and field is not None:
            self.limited.append({"field": field, "kind": kind, "length": len(value)})
        if value.strip():
            self.texts.append(value)
            self.scan(value)

    def url(self, value: str | None) -> None:
        value = value.strip() if value else None
        if value and value not in self._seen:
            self._seen.add(value)
            self.urls.append(value)

    def scan(self, value: str, bare: bool = True) -> None:
        for url in _find_urls(value, bare):
            self.url(url)

    def sweep(self, value: object) -> None:
        """Catch URLs in places the typed walk does not know (new shapes, Flow data...)."""
        if isinstance(value, dict):
            for key, item in value.items():
                if key in ("link", "url") and isinstance(item, str):
                    self.url(item)
                else:
                    self.sweep(item)
        elif isinstance(value, list):
            for item in value:
                self.sweep(item)
        elif isinstance(value, str) and _SCHEME_URL.search(value):  # one C call for a string without any
            self.scan(value, bare=False)  # only unmistakable URLs: ids and tokens are not prose


def _media_object(obj: dict[str, Any], kind: str, path: str, content: _Content) -> dict[str, Any]:
    media_id = _opt_str(obj, "id", path)
    link = _opt_str(obj, "link", path)
    if not media_id and not link:
        raise InvalidMessage(f"{path} needs an id or a link")
    content.url(link)
    if kind in _CAPTIONED:
        content.text(_opt_str(obj, "caption", path), field=f"{path}.caption", kind="caption")
    if kind == "document":
        content.text(_opt_str(obj, "filename", path))
    return {"kind": kind, "id": media_id, "link": link}


def _text(obj: dict[str, Any], content: _Content) -> None:
    content.text(_req_str(obj, "body", "text"), field="text.body", kind="body")


def _location(obj: dict[str, Any], path: str, content: _Content) -> dict[str, float]:
    """The coordinates as numbers (the `location` fact); whether they are in range is payload.location's call."""
    facts: dict[str, float] = {}
    for key in ("latitude", "longitude"):
        value = obj.get(key)
        if value is None:
            raise InvalidMessage(f"{path}.{key} is required")
        # Numbers per Meta's schema; numeric strings are tolerated because SDKs send them.
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise InvalidMessage(f"{path}.{key} must be a number, not {_kind(value)}")
        try:
            number = float(value)
        except (ValueError, OverflowError):
            raise InvalidMessage(f"{path}.{key} must be a number, not {_show(value)}") from None
        if not math.isfinite(number):  # "nan", "inf", 1e999: not a coordinate, and not JSON either
            raise InvalidMessage(f"{path}.{key} must be a number, not {_show(value)}")
        facts[key] = number
    content.text(_opt_str(obj, "name", path))
    content.text(_opt_str(obj, "address", path))
    return facts


def _contacts(items: list[Any], content: _Content) -> None:
    if not items:
        raise InvalidMessage("contacts must not be empty")
    for i, item in enumerate(items):
        path = f"contacts[{i}]"
        contact = _object(item, path)
        name = _req_object(contact, "name", path)
        content.text(_req_str(name, "formatted_name", f"{path}.name"))
        for key in ("prefix", "first_name", "middle_name", "last_name", "suffix"):
            content.text(_opt_str(name, key, f"{path}.name"))
        org = _opt_object(contact, "org", path)
        if org is not None:
            for key in ("company", "department", "title"):
                content.text(_opt_str(org, key, f"{path}.org"))
        for item_path, address in _objects(contact, "addresses", path):
            for key in ("street", "city", "state", "zip", "country"):
                content.text(_opt_str(address, key, item_path))
        for item_path, phone in _objects(contact, "phones", path):
            content.text(_opt_str(phone, "phone", item_path))
        for item_path, email in _objects(contact, "emails", path):
            content.text(_opt_str(email, "email", item_path))
        for item_path, url in _objects(contact, "urls", path):
            link = _opt_str(url, "url", item_path)
            content.url(link)
        content.text(_opt_str(contact, "birthday", path))


def _reaction(obj: dict[str, Any]) -> None:
    _req_str(obj, "message_id", "reaction", non_empty=True)
    _opt_str(obj, "emoji", "reaction")  # "" removes a reaction; emoji are not scanned as text


def _interactive_parts(obj: dict[str, Any], path: str, content: _Content) -> None:
    """Header, body, footer and action of an interactive message or of a carousel card."""
    header = _opt_object(obj, "header", path)
    if header is not None:
        header_path = _join(path, "header")
        _opt_str(header, "type", header_path)
        content.text(_opt_str(header, "text", header_path))
        for kind in ("image", "video", "document"):
            media = _opt_object(header, kind, header_path)
            if media is not None:
                content.url(_opt_str(media, "link", f"{header_path}.{kind}"))
                if kind == "document":
                    content.text(_opt_str(media, "filename", f"{header_path}.{kind}"))
    for part in ("body", "footer"):
        section = _opt_object(obj, part, path)
        if section is not None:
            content.text(_opt_str(section, "text", _join(path, part)))
    action = _opt_object(obj, "action", path)
    if action is not None:
        _action(action, _join(path, "action"), content)


def _action(action: dict[str, Any], path: str, content: _Content) -> None:
    content.text(_opt_str(action, "button", path))  # the list message's button label
    for button_path, button in _objects(action, "buttons", path):
        for key in ("reply", "quick_reply"):
            reply = _opt_object(button, key, button_path)
            if reply is not None:
                content.text(_opt_str(reply, "title", f"{button_path}.{key}"))
    for section_path, section in _objects(action, "sections", path):
        content.text(_opt_str(section, "title", section_path))
        for row_path, row in _objects(section, "rows", section_path):
            content.text(_opt_str(row, "title", row_path))
            content.text(_opt_str(row, "description", row_path))
    params = _opt_object(action, "parameters", path)
    if params is not None:
        params_path = f"{path}.parameters"
        content.text(_opt_str(params, "display_text", params_path))  # cta_url, voice_call
        url = _opt_str(params, "url", params_path)
        content.url(url)
        content.text(_opt_str(params, "flow_cta", params_path))
        order = params.get("order")
        if isinstance(order, dict):  # order_details / order_status: what the order card prints
            order_path = f"{params_path}.order"
            content.text(_opt_str(order, "description", order_path))
            for item_path, item in _objects(order, "items", order_path):
                content.text(_opt_str(item, "name", item_path))
            for key in ("discount", "shipping", "tax"):
                part = order.get(key)
                if isinstance(part, dict):
                    content.text(_opt_str(part, "description", f"{order_path}.{key}"))
                    content.text(_opt_str(part, "discount_program_name", f"{order_path}.{key}"))
    for card_path, card in _objects(action, "cards", path):  # carousel
        _interactive_parts(card, card_path, content)


def _interactive(obj: dict[str, Any], content: _Content) -> tuple[str, dict[str, Any]]:
    interactive_type = _req_str(obj, "type", "interactive", non_empty=True)
    _interactive_parts(obj, "interactive", content)  # validates the shapes _interactive_facts reads
    return interactive_type, _interactive_facts(obj, interactive_type)


def _list_of(obj: dict[str, Any], key: str) -> list[Any]:
    value = obj.get(key)
    return value if isinstance(value, list) else []


def _interactive_facts(obj: dict[str, Any], interactive_type: str) -> dict[str, Any]:
    """What payload.rego checks against Meta's limits (docs/input.md `message.interactive`).

    `fields`: each capped field present, with its length in characters (code points), as
    `limited_texts` does for bodies and captions. Counts and duplicates of the reply buttons
    and the list's sections and rows. Only the message itself, not carousel cards."""
    fields: list[dict[str, Any]] = []

    def field(value: object, path: str, kind: str) -> None:
        if isinstance(value, str):
            fields.append({"field": path, "kind": kind, "length": len(value)})

    header = obj.get("header")
    if isinstance(header, dict) and header.get("type") == "text":
        field(header.get("text"), "interactive.header.text", "header_text")
    for part in ("body", "footer"):
        section = obj.get(part)
        if isinstance(section, dict):
            field(section.get("text"), f"interactive.{part}.text", part)
    action = obj.get("action")
    action = action if isinstance(action, dict) else {}
    buttons = _list_of(action, "buttons")
    ids: list[str] = []
    titles: list[str] = []
    for i, button in enumerate(buttons):
        reply = button.get("reply") if isinstance(button, dict) else None
        if isinstance(reply, dict):
            path = f"interactive.action.buttons[{i}].reply"
            field(reply.get("title"), f"{path}.title", "button_title")
            field(reply.get("id"), f"{path}.id", "button_id")
            if isinstance(reply.get("id"), str):
                ids.append(reply["id"])
            if isinstance(reply.get("title"), str):
                titles.append(reply["title"])
    if interactive_type == "list":
        field(action.get("button"), "interactive.action.button", "list_button")
    sections = _list_of(action, "sections")
    rows = 0
    for i, section in enumerate(sections):
        if not isinstance(section, dict):
            continue
        field(section.get("title"), f"interactive.action.sections[{i}].title", "section_title")
        section_rows = _list_of(section, "rows")
        rows += len(section_rows)
        for j, row in enumerate(section_rows):
            if isinstance(row, dict):
                path = f"interactive.action.sections[{i}].rows[{j}]"
                field(row.get("title"), f"{path}.title", "row_title")
                field(row.get("description"), f"{path}.description", "row_description")
                field(row.get("id"), f"{path}.id", "row_id")
    params = action.get("parameters")
    if interactive_type == "cta_url" and isinstance(params, dict):
        field(params.get("display_text"), "interactive.action.parameters.display_text", "cta_display_text")
    return {
        "type": interactive_type,
        "fields": fields,
        "button_count": len(buttons),
        # ids are the app's own, but may carry anything: masked like texts (sendgate/sensitive.py)
        "duplicate_button_ids": sorted(find_sensitive(v)[0] for v, n in Counter(ids).items() if n > 1),
        "duplicate_button_titles": sorted(find_sensitive(v)[0] for v, n in Counter(titles).items() if n > 1),
        "section_count": len(sections),
        "row_count": rows,
    }


def _button_index(comp: dict[str, Any], path: str) -> str | None:
    value = comp.get("index")
    if value is None:
        return None
    # Meta's examples send both 0 and "0"; the catalog keys buttons by the string form.
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidMessage(f"{path}.index must be a string or an integer, not {_kind(value)}")
    text = str(value).strip()
    if not text.isdigit() or not text.isascii():
        raise InvalidMessage(f"{path}.index must be a button position such as \"0\", not {_show(value)}")
    return str(int(text))


def _parameter_texts(param: dict[str, Any], ptype: str, path: str, shown: bool, content: _Content) -> None:
    """Texts and URLs of one template parameter. shown=False for button parameters."""
    if ptype == "text":
        if shown:
            content.text(_req_str(param, "text", path))
        elif isinstance(param.get("text"), str):
            content.scan(param["text"])  # a URL suffix: only a URL inside it matters
    elif ptype in ("currency", "date_time"):
        value = _req_object(param, ptype, path)
        content.text(_opt_str(value, "fallback_value", f"{path}.{ptype}"))
    elif ptype in ("image", "video", "document"):
        media = _req_object(param, ptype, path)
        link = _opt_str(media, "link", f"{path}.{ptype}")
        content.url(link)
        if ptype == "document":
            content.text(_opt_str(media, "filename", f"{path}.{ptype}"))
    elif ptype == "location":
        location = _req_object(param, "location", path)
        content.text(_opt_str(location, "name", f"{path}.location"))
        content.text(_opt_str(location, "address", f"{path}.location"))
    elif ptype == "coupon_code":
        content.text(_opt_str(param, "coupon_code", path))
    # payload, action, product, limited_time_offer...: nothing shown; sweep() finds any URL.


def _component(comp_value: object, path: str, content: _Content) -> dict[str, Any]:
    comp = _object(comp_value, path)
    ctype = _req_str(comp, "type", path, non_empty=True).lower()
    sub_type = _opt_str(comp, "sub_type", path)
    index = _button_index(comp, path)
    if ctype == "button" and index is None:
        raise InvalidMessage(f"{path}.index is required for a button component")
    parameters = _opt_list(comp, "parameters", path) or []
    names: list[str] = []
    for j, param_value in enumerate(parameters):
        param_path = f"{path}.parameters[{j}]"
        param = _object(param_value, param_path)
        ptype = _req_str(param, "type", param_path, non_empty=True).lower()
        name = _opt_str(param, "parameter_name", param_path)
        if name is not None:
            names.append(name)
        _parameter_texts(param, ptype, param_path, ctype != "button", content)
    for card_path, card in _objects(comp, "cards", path):  # carousel templates
        for k, card_comp in enumerate(_opt_list(card, "components", card_path) or []):
            _component(card_comp, f"{card_path}.components[{k}]", content)
    return {
        "key": f"button_{index}" if ctype == "button" else ctype,
        "type": ctype,
        "sub_type": sub_type.lower() if sub_type is not None else None,
        "index": index,
        "parameter_count": len(parameters),
        "parameter_names": names,
        "parameters": parameters,
    }


def _template(obj: dict[str, Any], content: _Content) -> dict[str, Any]:
    name = _req_str(obj, "name", "template", non_empty=True)
    language = _req_object(obj, "language", "template")
    code = _req_str(language, "code", "template.language", non_empty=True)
    components = _opt_list(obj, "components", "template") or []
    return {
        "name": name,
        "language": code,
        "components": [_component(comp, f"template.components[{i}]", content) for i, comp in enumerate(components)],
    }


# --- envelope -------------------------------------------------------------------------------

_PHONE_LIKE = re.compile(r"\+?[0-9 ()\-.\u00a0]+")


def normalize_recipient(value: str) -> str:
    """The recipient key sendgate stores and policies see, for a `to`, a BSUID or a wa_id.

    A phone number written with spaces, dashes, dots, parentheses or a leading "+"
    becomes its digits ("+1 (650) 555-1234" -> "16505551234"), so the consent
    ledger, the inbound window and the send history all key on what Meta calls
    the wa_id. Anything else (a BSUID, a group id) is only trimmed. Never raises.
    """
    value = value.strip()
    if _PHONE_LIKE.fullmatch(value) and any(ch.isdigit() for ch in value):
        return re.sub(r"\D", "", value)
    return value


def _recipient(payload: dict[str, Any], required: bool) -> str | None:
    to = payload.get("to")
    if to is not None:  # `to` wins when both are sent, as with Meta's phone/BSUID routing
        if not isinstance(to, str):
            raise InvalidMessage(f"to must be a string (the recipient's phone number), not {_kind(to)}")
        if not to.strip():
            raise InvalidMessage("to must not be empty")
        return normalize_recipient(to)
    bsuid = payload.get("recipient")
    if bsuid is not None:
        if not isinstance(bsuid, str):
            raise InvalidMessage(f"recipient must be a string (a business-scoped user ID), not {_kind(bsuid)}")
        if not bsuid.strip():
            raise InvalidMessage("recipient must not be empty")
        return normalize_recipient(bsuid)  # a BSUID ("US.1349...") is opaque: kept as received
    if required:
        raise InvalidMessage("to is required: the recipient's phone number (or `recipient`, a business-scoped user ID)")
    return None


def _recipient_type(payload: dict[str, Any]) -> str:
    value = payload.get("recipient_type", "individual")
    if value not in _RECIPIENT_TYPES:
        raise InvalidMessage(f"recipient_type must be \"individual\" or \"group\", not {_show(value)}")
    return str(value)


def _context_message_id(payload: dict[str, Any]) -> str | None:
    context = _opt_object(payload, "context", "")
    return None if context is None else _req_str(context, "message_id", "context", non_empty=True)


def _message_type(payload: dict[str, Any]) -> str:
    value = payload.get("type")
    if value is None:
        # Meta's own examples omit `type` ("Send Text Message with Preview URL", "Send Reply
        # to List Message"): default it from the one content object present, as Meta does.
        present = [kind for kind in MESSAGE_TYPES if kind in payload]
        if len(present) == 1:
            return present[0]
        if not present:
            raise InvalidMessage("type is required: no message content object (text, image, template...) found")
        raise InvalidMessage(f"type is required when the body holds several content objects: {sorted(present)}")
    if not isinstance(value, str):
        raise InvalidMessage(f"type must be a string, not {_kind(value)}")
    if value not in MESSAGE_TYPES:
        raise InvalidMessage(f"unknown message type {_show(value)}; expected one of {', '.join(sorted(MESSAGE_TYPES))}")
    return value


# Direct Send (Meta: direct-send/send-utility-and-authentication-messages, api-reference):
# `category` on a free-form text or interactive message; Meta supports these two values and
# answers 100 for anything else, and for `ttl_seconds` on a message that is not Direct Send.
DIRECT_SEND_CATEGORIES = frozenset({"utility", "authentication"})
DIRECT_SEND_TYPES = frozenset({"text", "interactive"})


def _direct_send(payload: dict[str, Any], message_type: str) -> tuple[str | None, int | None]:
    """(`category` lower-cased, `ttl_seconds`) of a Direct Send message; (None, None) for others.

    The ranges of `ttl_seconds` per category are the policies' (direct_send.ttl_range)."""
    category = payload.get("category")
    ttl = payload.get("ttl_seconds")
    if category is None:
        if ttl is not None:
            raise InvalidMessage(
                "ttl_seconds is only supported with Direct Send: a text or interactive message with a category"
            )
        return None, None
    if not isinstance(category, str):
        raise InvalidMessage(f"category must be a string (\"utility\" or \"authentication\"), not {_kind(category)}")
    if category.lower() not in DIRECT_SEND_CATEGORIES:
        raise InvalidMessage(
            f"category must be \"utility\" or \"authentication\" (Direct Send), not {_show(category)}"
        )
    if message_type not in DIRECT_SEND_TYPES:
        raise InvalidMessage(
            f"category (Direct Send) only goes with a text or interactive message, not type {_show(message_type)}"
        )
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int)):
        raise InvalidMessage(f"ttl_seconds must be a whole number of seconds, not {_kind(ttl)}")
    return category.lower(), ttl


def _messaging_product(payload: dict[str, Any]) -> None:
    # Meta's own wording, so apps that match on it see what Meta would have answered.
    product = payload.get("messaging_product")
    if product is None:
        raise InvalidMessage("The parameter messaging_product is required.")
    if not isinstance(product, str):
        raise InvalidMessage(f"Param messaging_product must be the string \"whatsapp\", not {_kind(product)}.")
    if product != "whatsapp":
        shown = product if len(product) <= 40 else product[:40] + "..."
        raise InvalidMessage(f'Param messaging_product must be one of {{WHATSAPP}} - got "{shown}".')


# A body with any of these is a message, whatever else it says (a `status` field included).
_RECIPIENT_OR_TYPE = frozenset({"to", "recipient", "type"})
# A read receipt or typing indicator is exactly this (FACTS.md §1, Meta's example
# "Send typing indicator and read receipt"): a message's fields in it are refused, not skipped.
_STATUS_FIELDS = frozenset({"messaging_product", "status", "message_id", "typing_indicator"})


def _status_call(payload: dict[str, Any]) -> dict[str, Any]:
    """A read receipt (`status: read`, the inbound `message_id`), optionally with a typing indicator."""
    extra = sorted(set(payload) - _STATUS_FIELDS)
    if extra:
        raise InvalidMessage(
            "a read receipt or typing indicator carries only messaging_product, status, message_id and"
            f" typing_indicator, not {', '.join(extra)}; a message needs to and type"
        )
    if payload["status"] != "read":
        raise InvalidMessage(f"status must be \"read\", not {_show(payload['status'])}")
    message_id = _req_str(payload, "message_id", "", non_empty=True)
    indicator = _opt_object(payload, "typing_indicator", "")
    if indicator is not None:
        if set(indicator) != {"type"}:
            raise InvalidMessage("typing_indicator must be exactly {\"type\": \"text\"}")
        if indicator["type"] != "text":
            raise InvalidMessage(f"typing_indicator.type must be \"text\", not {_show(indicator['type'])}")
    return _empty("status", None, "individual", message_id)


def _empty(message_type: str, recipient: str | None, recipient_type: str, context_id: str | None) -> dict[str, Any]:
    return {
        "type": message_type,
        "recipient": recipient,
        "recipient_type": recipient_type,
        "is_status": message_type == "status",
        "context_message_id": context_id,
        "texts": [],
        "words": "",
        "urls": [],
        "links": [],
        "limited_texts": [],
        "media": None,
        "interactive_type": None,
        "template": None,
        "category": None,  # Direct Send: the top-level `category`, lower case
        "ttl_seconds": None,  # Direct Send: the top-level `ttl_seconds`
        "recipient_field": None,  # "to" or "recipient" (a BSUID): the field that named the recipient
        "interactive": None,
        "location": None,
        "card_numbers": [],
        "ibans": [],
    }


def normalize(payload: object, endpoint: str = "messages") -> dict[str, Any]:
    """Turn a parsed JSON body into the `message` object of the policy input (docs/input.md).

    `endpoint` is "messages", "marketing_messages" or "messages_encrypted". Raises
    InvalidMessage, naming the JSON path at fault, when the body is not a send payload;
    raises ValueError for an endpoint this module does not know (a caller bug).
    See the module docstring for what counts as a text and as a URL.
    """
    if endpoint not in ENDPOINTS:
        raise ValueError(f"unknown send endpoint {endpoint!r}")
    if not isinstance(payload, dict):
        raise InvalidMessage("request body must be a JSON object")
    _messaging_product(payload)

    if endpoint == "messages_encrypted":
        # Sealed for Meta: nothing inside can be read, so the policies see only the envelope.
        contents = payload.get("encrypted_contents")
        if not isinstance(contents, str) or not contents.strip():
            raise InvalidMessage("encrypted_contents is required and must be a string")
        return _empty("encrypted", _recipient(payload, required=False), _recipient_type(payload), _context_message_id(payload))

    if "status" in payload and not _RECIPIENT_OR_TYPE.intersection(payload):
        if endpoint == "marketing_messages":
            raise InvalidMessage("marketing_messages only sends templates; read receipts go to /messages")
        return _status_call(payload)

    recipient = _recipient(payload, required=True)
    recipient_type = _recipient_type(payload)
    context_id = _context_message_id(payload)
    message_type = _message_type(payload)
    if endpoint == "marketing_messages" and message_type != "template":
        raise InvalidMessage(f"marketing_messages only sends templates, not type {_show(message_type)}")

    raw = payload.get(message_type)
    if raw is None:
        raise InvalidMessage(f"{message_type} is required for type {_show(message_type)}")
    body: dict[str, Any] | list[Any]
    if message_type == "contacts":
        if not isinstance(raw, list):
            raise InvalidMessage(f"contacts must be a list, not {_kind(raw)}")
        body = raw
    else:
        body = _object(raw, message_type)

    message = _empty(message_type, recipient, recipient_type, context_id)
    message["recipient_field"] = "to" if payload.get("to") is not None else "recipient"
    message["category"], message["ttl_seconds"] = _direct_send(payload, message_type)
    content = _Content()
    if isinstance(body, list):
        _contacts(body, content)
    elif message_type == "text":
        _text(body, content)
    elif message_type in _MEDIA_TYPES:
        message["media"] = _media_object(body, message_type, message_type, content)
    elif message_type == "location":
        message["location"] = _location(body, "location", content)
    elif message_type == "reaction":
        _reaction(body)
    elif message_type == "interactive":
        message["interactive_type"], message["interactive"] = _interactive(body, content)
    elif message_type == "template":
        message["template"] = _template(body, content)
    content.sweep(body)

    # Card numbers and IBANs: facts in masked form, and masked in everything else the input
    # carries (texts, words, URLs, template parameters as sent), so no full number reaches the
    # engine, a reason or the log (sendgate/sensitive.py).
    texts: list[str] = []
    for text in content.texts:
        masked, found = find_sensitive(text)
        texts.append(masked)
        for item in found:
            message["card_numbers" if item.kind == "card" else "ibans"].append(item.fact)
    urls = [find_sensitive(url)[0] for url in content.urls]
    template = message["template"]
    if template is not None:
        for component in template["components"]:
            if may_hold_sensitive(component["parameters"]):
                component["parameters"] = mask_sensitive(component["parameters"])
    message["texts"] = texts
    message["words"] = words(texts)
    message["urls"] = urls
    message["links"] = links(urls)
    message["limited_texts"] = content.limited
    return message


# Derived facts, so policies match terms and domains with one substring test or
# set lookup instead of regexes (a regex costs tens of microseconds in regorus).
_NOT_WORD = re.compile(r"[\W_]+")
_HOST = re.compile(r"^\s*(?:[A-Za-z][A-Za-z0-9+.-]*://)?(?:[^@/?#\s]*@)?([^/?#:\s]+)")


def words(texts: list[str]) -> str:
    """The texts lower-cased, each run of non-letters/digits one space, one text per line,
    padded with spaces: ["Buy-Followers now!", "Hi"] -> " buy followers now \n hi ".

    A term matches on word boundaries where " term " is a substring; a term cannot
    match across two texts.
    """
    if not texts:
        return ""
    lines = (_NOT_WORD.sub(" ", text.lower()).strip() for text in texts)
    return " " + " \n ".join(lines) + " "


def links(urls: list[str]) -> list[dict[str, Any]]:
    """Each URL with its host lower-cased, without credentials, port, trailing dot or "www.",
    and the host's parent domains: "https://Go.Bit.ly:443/x" -> host "go.bit.ly",
    domains ["go.bit.ly", "bit.ly", "ly"]. URLs without a readable host are left out."""
    out = []
    for url in urls:
        match = _HOST.match(url)
        if not match:
            continue
        host = match.group(1).lower().rstrip(".").removeprefix("www.")
        if not host:
            continue
        labels = host.split(".")
        out.append({"url": url, "host": host, "domains": [".".join(labels[i:]) for i in range(len(labels))]})
    return out
