"""Config keys of the review pages and retention: reviewer_tokens, session_ttl, log.retention_days."""

from __future__ import annotations

import pytest

from sendgate.config import ConfigError, ReviewerToken, load_config


def test_defaults() -> None:
    config = load_config(None, env={})
    assert config.reviewer_tokens == ()
    assert config.session_ttl == 8 * 3600
    assert config.log.retention_days is None


def test_reviewer_tokens_from_the_environment() -> None:
    config = load_config(None, env={
        "SENDGATE_REVIEWER_TOKENS": '[{name: ana, token: "t-ana"}, "t-second"]',
        "SENDGATE_SESSION_TTL": "900",
        "SENDGATE_LOG": "{retention_days: 90}",
    })  # fmt: skip
    assert config.reviewer_tokens == (ReviewerToken("ana", "t-ana"), ReviewerToken("reviewer2", "t-second"))
    assert config.session_ttl == 900 and config.log.retention_days == 90
    assert "t-ana" not in repr(config.reviewer_tokens)  # tokens stay out of logs and tracebacks


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SENDGATE_REVIEWER_TOKENS": '["same", "same"]'}, "every token must be different"),
        ({"SENDGATE_REVIEWER_TOKENS": "[{name: a, token: x}, {name: a, token: y}]"}, "every name must be different"),
        ({"SENDGATE_REVIEWER_TOKENS": "[{name: admin, token: x}]"}, "'admin' names the admin token"),
        ({"SENDGATE_REVIEWER_TOKENS": '[""]'}, "non-empty string"),
        ({"SENDGATE_REVIEWER_TOKENS": "[{name: a, token: x, role: boss}]"}, "unknown keys"),
        ({"SENDGATE_REVIEWER_TOKENS": "x", "SENDGATE_ADMIN_TOKEN": "x"}, "must be a list"),
        ({"SENDGATE_REVIEWER_TOKENS": '["x"]', "SENDGATE_ADMIN_TOKEN": "x"}, "must differ from admin_token"),
        ({"SENDGATE_SESSION_TTL": "0"}, "session_ttl must be a positive"),
        ({"SENDGATE_SESSION_TTL": "soon"}, "session_ttl must be an integer"),
        ({"SENDGATE_LOG": "{retention_days: 0}"}, "retention_days must be a positive"),
        ({"SENDGATE_LOG": "{retention_days: forever}"}, "log.retention_days must be an integer"),
    ],
)
def test_bad_values_name_the_key(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, env=env)
