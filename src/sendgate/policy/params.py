"""`data.sendgate.params` of the serving policies, for code that reads the compliance team's data
outside a decision (the webhooks' opt-out keywords, the send path's pacing thresholds).

Asked of the engine again when its revision changes, or after `max_age` seconds (OPA serving its
own bundle may change it unseen). When the engine cannot answer (OPA down), the last known params
serve, and it is asked again `retry` seconds later. When none were ever known, `get` answers
`unknown` if one was given (asking again `retry` seconds later), else raises the engine's error.
Each failed attempt logs one warning.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sendgate.policy.base import PolicyEngine

__all__ = ["ServingParams"]

log = logging.getLogger("sendgate.policy")


class ServingParams:
    def __init__(
        self,
        engine: Callable[[], PolicyEngine],
        *,
        reader: str,
        clock: Callable[[], float] = time.monotonic,
        max_age: float = 60.0,
        retry: float = 5.0,
        unknown: dict[str, Any] | None = None,
    ) -> None:
        self._engine = engine
        self._reader = reader  # who reads them, for the log line
        self._clock = clock
        self._max_age = max_age
        self._retry = retry
        self._unknown = unknown
        self._params: dict[str, Any] | None = None
        self._revision: str | None = None  # of the params known, or of the last failed attempt while none are
        self._ask_at = 0.0  # when the engine is asked again even if its revision is the same

    async def get(self) -> dict[str, Any]:
        engine = self._engine()
        now = self._clock()
        if now < self._ask_at and self._revision == engine.revision:
            # fresh, or none known and the last attempt a moment ago (only with `unknown`)
            return self._params if self._params is not None else dict(self._unknown or {})
        try:
            params = await engine.params()
        except Exception as exc:
            self._ask_at = now + self._retry
            if self._params is not None:
                log.warning("%s: the engine did not give its params (%s); using the last known ones", self._reader, exc)
                return self._params
            if self._unknown is None:
                self._ask_at = 0.0  # nothing to serve in between: ask again on the next call
                raise
            log.warning("%s: the engine did not give its params (%s); none are known yet", self._reader, exc)
            self._revision = engine.revision
            return dict(self._unknown)
        self._params, self._revision, self._ask_at = params, engine.revision, now + self._max_age
        return params
