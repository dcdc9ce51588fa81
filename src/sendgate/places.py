"""Where a recipient's phone number is: its country and time zone, from phonenumbers' metadata."""

from __future__ import annotations

from functools import lru_cache

import phonenumbers
from phonenumbers import timezone as phone_timezone

__all__ = ["PLACE_DATA", "recipient_place"]

# What a stored place was computed with: a newer phonenumbers may place a number differently.
PLACE_DATA = f"phonenumbers {phonenumbers.__version__}"


@lru_cache(maxsize=65536)
def recipient_place(recipient: str) -> tuple[str | None, str | None]:
    """Country code and first time zone of a phone number; (None, None) for BSUIDs and unknowns.

    Tens of microseconds per number (phonenumbers matches it against its regions'
    patterns), so the store keeps the place of every number it learns of (consent,
    inbound messages) and the send path reads it from there.
    """
    if not recipient.isdigit():
        return None, None
    try:
        number = phonenumbers.parse("+" + recipient)
    except phonenumbers.NumberParseException:
        return None, None
    country = phonenumbers.region_code_for_number(number)
    if country in (None, "ZZ"):
        return None, None
    zones = [z for z in phone_timezone.time_zones_for_number(number) if z != "Etc/Unknown"]
    return country, zones[0] if zones else None
