"""Payment card numbers and IBANs in text: found, checked, masked (content.card_number, content.iban).

WhatsApp's Business Messaging Policy forbids sharing (or asking for) full payment card numbers and
financial account numbers, and PCI DSS forbids a card number being kept in a log. So the gateway
finds them while it normalizes a message (docs/input.md `message.card_numbers`, `message.ibans`),
and from then on only their masked form exists: in the policy input, in reasons, and in the
decision log (the recorder masks the stored body with `mask_sensitive`).

Checked here, not in Rego: a Luhn or mod-97 check is a loop over digits, a few microseconds in
Python and far more in regorus, and the full number must never reach the input the engine (or
OPA's own decision log) sees.

- A card number: 13 to 19 digits, optionally one space or dash between digits ("4111 1111 1111
  1111", "4111-1111-1111-1111"), not glued to a letter, digit or a leading "+" (a phone number),
  passing the Luhn check, not all one digit. `network` names the card network its prefix and
  length belong to (visa, mastercard, amex...), None when none does: most phone numbers and
  order numbers that happen to pass Luhn (1 in 10 do) have no network.
- An IBAN: a country of the IBAN registry, two check digits and that country's BBAN length of
  letters and digits, optionally in groups separated by single spaces, passing the ISO 13616
  mod-97 check.

Masked forms keep the layout and the last 4 digits (or characters): "**** **** **** 1111".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["Found", "find", "iban_valid", "luhn_valid", "mask_sensitive", "may_hold"]

_CARD = re.compile(r"(?<![\w+])(?<!\d[ -])(?:\d[ -]?){12,18}\d(?![ -]?\d)(?!\w)")
_NOT_DIGIT = re.compile(r"\D")
# What any card number (13 digits, separators allowed) or IBAN (country, check digits) starts with.
# Both hold two digits in a row ("4111", "DE89"): a far cheaper first test, which most texts fail.
_CANDIDATE = re.compile(r"\d(?:[ -]?\d){12}|[A-Za-z]{2}\d{2}")
_TWO_DIGITS = re.compile(r"\d\d")
_TWO_DIGITS_BYTES = re.compile(rb"\d\d")
_CANDIDATE_BYTES = re.compile(_CANDIDATE.pattern.encode())

# (network, first digits from, to, lengths): the networks' published prefix ranges (ISO/IEC
# 7812 issuer identification numbers). The first match wins.
_NETWORKS: tuple[tuple[str, int, int, frozenset[int]], ...] = (
    ("amex", 34, 34, frozenset({15})),
    ("amex", 37, 37, frozenset({15})),
    ("visa", 4, 4, frozenset({13, 16, 19})),
    ("mastercard", 51, 55, frozenset({16})),
    ("mastercard", 2221, 2720, frozenset({16})),
    ("mir", 2200, 2204, frozenset({16, 17, 18, 19})),
    ("discover", 6011, 6011, frozenset({16, 17, 18, 19})),
    ("discover", 644, 649, frozenset({16, 17, 18, 19})),
    ("discover", 65, 65, frozenset({16, 17, 18, 19})),
    ("jcb", 3528, 3589, frozenset({16, 17, 18, 19})),
    ("diners", 300, 305, frozenset({14, 15, 16, 17, 18, 19})),
    ("diners", 36, 36, frozenset({14, 15, 16, 17, 18, 19})),
    ("diners", 38, 39, frozenset({16, 17, 18, 19})),
    ("unionpay", 62, 62, frozenset({16, 17, 18, 19})),
    ("rupay", 60, 60, frozenset({16})),
    ("rupay", 81, 82, frozenset({16})),
    ("rupay", 508, 508, frozenset({16})),
    ("maestro", 50, 50, frozenset(range(13, 20))),
    ("maestro", 56, 58, frozenset(range(13, 20))),
    ("maestro", 67, 67, frozenset(range(13, 20))),
)

# Total IBAN length per country (the SWIFT IBAN registry).
_IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
    "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28,
    "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}
# Where an IBAN may start: a country code and two check digits, not glued to a letter or digit.
_IBAN_START = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2})(\d{2})")


@dataclass(frozen=True)
class Found:
    """One card number or IBAN in a text: where it is, and what the input may say about it."""

    kind: str  # "card" | "iban"
    start: int
    end: int
    masked: str
    fact: dict[str, Any]


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of a card number's digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """The ISO 13616 mod-97 check of an IBAN without spaces, upper case."""
    rearranged = iban[4:] + iban[:4]
    try:
        number = int("".join(str(int(ch, 36)) for ch in rearranged))
    except ValueError:
        return False
    return number % 97 == 1


def _network(digits: str) -> str | None:
    for name, low, high, lengths in _NETWORKS:
        width = len(str(low))
        if len(digits) in lengths and low <= int(digits[:width]) <= high:
            return name
    return None


def _mask(written: str, keep: int = 4) -> str:
    """Every letter and digit but the last `keep` replaced by "*", separators kept."""
    out = list(written)
    seen = 0
    for i in range(len(out) - 1, -1, -1):
        if out[i].isalnum():
            seen += 1
            if seen > keep:
                out[i] = "*"
    return "".join(out)


def _ibans(text: str) -> list[Found]:
    found: list[Found] = []
    for match in _IBAN_START.finditer(text):
        country = match.group(1).upper()
        length = _IBAN_LENGTHS.get(country)
        if length is None or (found and match.start() < found[-1].end):
            continue
        # Read the rest: letters and digits, a single space allowed between two of them.
        chars: list[str] = []
        i = match.end()
        need = length - 4
        while i < len(text) and len(chars) < need:
            ch = text[i]
            if ch.isascii() and ch.isalnum():
                chars.append(ch.upper())
                i += 1
            elif ch == " " and i + 1 < len(text) and text[i + 1].isascii() and text[i + 1].isalnum():
                i += 1  # print format: groups of four, one space between
            else:
                break
        if len(chars) < need or (i < len(text) and text[i].isascii() and text[i].isalnum()):
            continue  # too short, or it runs on: not this country's IBAN
        iban = country + match.group(2) + "".join(chars)
        if not iban_valid(iban):
            continue
        written = text[match.start() : i]
        masked = _mask(written)
        found.append(Found("iban", match.start(), i, masked, {"masked": masked, "country": country, "last4": iban[-4:]}))
    return found


def _cards(text: str) -> list[Found]:
    found: list[Found] = []
    for match in _CARD.finditer(text):
        digits = _NOT_DIGIT.sub("", match.group())
        if len(set(digits)) == 1 or not luhn_valid(digits):
            continue
        masked = _mask(match.group())
        fact = {"masked": masked, "last4": digits[-4:], "length": len(digits), "network": _network(digits)}
        found.append(Found("card", match.start(), match.end(), masked, fact))
    return found


def find(text: str) -> tuple[str, list[Found]]:
    """The card numbers and IBANs in `text`, in order, and the text with each of them masked."""
    if not _TWO_DIGITS.search(text) or not _CANDIDATE.search(text):  # most texts: no card or IBAN can be in them
        return text, []
    ibans = _ibans(text)
    # Cards are looked for where no IBAN is: an IBAN's digits are not a second finding.
    rest = text
    for item in ibans:
        rest = rest[: item.start] + "#" * (item.end - item.start) + rest[item.end :]
    found = sorted(ibans + _cards(rest), key=lambda item: item.start)
    if not found:
        return text, []
    masked: list[str] = []
    last = 0
    for item in found:
        masked.append(text[last : item.start])
        masked.append(item.masked)
        last = item.end
    masked.append(text[last:])
    return "".join(masked), found


def _graph_id(key: object, value: object) -> bool:
    """An `id` or `*_id` field holding only digits: a Graph object's id (media, catalog, flow,
    product). One passes Luhn as often as any number (a media id "5700292204016914" does), but it
    is no card number, and reviewers need it to find the object."""
    if not isinstance(key, str) or not (key == "id" or key.endswith("_id")):
        return False
    return (isinstance(value, str) and value.isdigit()) or (isinstance(value, int) and not isinstance(value, bool))


def mask_sensitive(value: Any, skip_keys: frozenset[str] = frozenset()) -> Any:
    """`value` (text, or JSON of texts) with every card number and IBAN masked, at any depth.

    `skip_keys` are top-level keys left as they are (a body's `to`: a recipient's number is not a
    card number, and masking recipients is `log.mask_recipients`' job). Graph object ids (an `id`
    or `*_id` field of digits only) are left as they are too."""
    if isinstance(value, str):
        return find(value)[0]
    if isinstance(value, dict):
        return {k: v if k in skip_keys or _graph_id(k, v) else mask_sensitive(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_sensitive(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and 13 <= len(str(abs(value))) <= 19:
        masked = find(str(value))[0]  # a card number sent as a JSON number
        return value if masked == str(value) else masked
    return value


def may_hold(value: Any) -> bool:
    """False when JSON `value` certainly holds no card number or IBAN: one scan of its
    serialized form, cheaper than walking it (template parameters, on every template)."""
    dumped = orjson.dumps(value)
    return _TWO_DIGITS_BYTES.search(dumped) is not None and _CANDIDATE_BYTES.search(dumped) is not None
