"""Turn a finished call into its decision record: masking, content retention, stdout lines."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

from sendgate.config import LogOptions
from sendgate.gateway.call import SendCall
from sendgate.gateway.upstream import UpstreamResponse
from sendgate.masking import mask_record, mask_recipient_in
from sendgate.sensitive import mask_sensitive
from sendgate.state import DecisionLog, DecisionRecord, SendRecord

__all__ = ["DecisionRecorder", "RecorderHooks", "recipient_key"]

_MAX_INVALID_CONTENT = 4096  # characters of an unparseable body kept for review
# Masking reads this far past the cut, so a number the cut would halve is masked whole first.
_CUT_MARGIN = 64
_RECIPIENT_FIELDS = frozenset({"to", "recipient"})


def recipient_key(recipient: str) -> str:
    """What the log indexes recipients by, so filtering works when they are masked."""
    return hashlib.sha256(b"sendgate-recipient:" + recipient.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class RecorderHooks:
    """Event hooks, called in order once the decision log has a call's news: `on_record` after its
    record is committed (with its send-history row when it is forwarded), `on_answer` with Meta's
    HTTP status and error code (None when the body names none). The metrics and the monitor
    observe the send path here, not by subclassing the recorder."""

    on_record: Sequence[Callable[[SendCall, SendRecord | None], None]] = ()
    on_answer: Sequence[Callable[[SendCall, int, int | None], None]] = ()


class DecisionRecorder:
    def __init__(
        self,
        store: DecisionLog,
        options: LogOptions,
        mode: str,
        revision: Callable[[], str | None],
        hooks: RecorderHooks = RecorderHooks(),
    ) -> None:
        self.store = store
        self._options = options
        self._mode = mode
        self._revision = revision  # a callable, so records name the revision that decided
        self._hooks = hooks

    async def record(self, call: SendCall, send: SendRecord | None = None) -> None:
        message = call.message or {}
        recipient = message.get("recipient")
        template = message.get("template") or {}
        decision = call.decision
        record = DecisionRecord(
            id=call.id,
            timestamp=call.received_at,
            endpoint=call.endpoint,
            api_version=call.api_version,
            account=call.phone_number_id,
            waba_id=((call.input or {}).get("account") or {}).get("waba_id"),
            recipient=recipient,
            recipient_key=None if recipient is None else recipient_key(recipient),
            type=message.get("type"),
            template=template.get("name"),
            category=call.category,
            decision=call.outcome,
            mode=self._mode,
            forwarded=call.forwarded,
            reasons=call.reasons,
            warnings=decision.warn if decision else [],
            retry_after=decision.retry_after if decision and call.outcome == "defer" else None,
            # The revision that decided: per decision from OPA serving its own bundle, else the engine's.
            policy_revision=(decision.revision if decision and decision.revision else self._revision()),
            eval_us=call.eval_us,
            content=self._content(call),
            facts=self._facts(call),
            engine_decision_id=decision.decision_id if decision else None,
        )
        if self._options.mask_recipients:
            record = mask_record(record)
        if isinstance(record.content, str):  # an unparseable body, cut after masking (see _CUT_MARGIN)
            record = replace(record, content=record.content[:_MAX_INVALID_CONTENT])
        await self.store.log_decision(record, send)
        if self._options.json_stdout:
            line = record.as_json()
            line.pop("content")
            line.pop("facts")
            sys.stdout.buffer.write(orjson.dumps(line) + b"\n")
            sys.stdout.flush()
        for on_record in self._hooks.on_record:
            on_record(call, send)

    def upstream_answered(self, call: SendCall, response: UpstreamResponse) -> None:
        message_id, error_code = _meta_ids(response.body)
        self.store.log_upstream(call.id, response.status, message_id, error_code, None, response.status >= 300)
        for on_answer in self._hooks.on_answer:
            on_answer(call, response.status, error_code)

    def upstream_failed(self, call: SendCall, detail: str) -> None:
        self.store.log_upstream(call.id, None, None, None, detail, True)

    def loggable(self, text: str, recipient: str | None) -> str:
        """`text` for the server's log: with masking on, the recipient's number does not survive in it."""
        if not self._options.mask_recipients or recipient is None:
            return text
        return str(mask_recipient_in(text, recipient))

    def _keeps_content(self, call: SendCall) -> bool:
        """Rejected sends keep what reviewers need; allowed ones only when configured."""
        return call.outcome != "allow" or self._options.keep_allowed_content

    def _facts(self, call: SendCall) -> dict[str, Any] | None:
        """The input document's `recipient` and `template` facts, kept when the content is."""
        if not self._keeps_content(call):
            return None
        document = call.input or {}
        recipient, template = document.get("recipient"), document.get("template")
        if recipient is None and template is None:
            return None
        return {"recipient": recipient, "template": template}

    def _content(self, call: SendCall) -> Any:
        # Card numbers and IBANs are never kept, whatever the masking options (PCI DSS): masked
        # to their last 4 digits. The recipient fields are left to log.mask_recipients.
        if not self._keeps_content(call):
            return None
        if call.body is not None:
            return mask_sensitive(call.body, _RECIPIENT_FIELDS)
        if call.raw_body:  # up to 4 bytes a character: enough for the cut and its margin
            return mask_sensitive(call.raw_body[: (_MAX_INVALID_CONTENT + _CUT_MARGIN) * 4].decode("utf-8", "replace"))
        return None


def _meta_ids(body: bytes) -> tuple[str | None, int | None]:
    """Meta's message id from a success body, or its error code from an error body."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(payload, dict):
        return None, None
    messages = payload.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[0], dict):
        message_id = messages[0].get("id")
        return (message_id if isinstance(message_id, str) else None), None
    error = payload.get("error")
    if isinstance(error, dict) and isinstance(error.get("code"), int):
        return None, error["code"]
    return None, None
