from __future__ import annotations

from pathlib import Path

import pytest

from sendgate.config import Account, Config, ConfigError, load_config


def test_defaults_without_a_file() -> None:
    config = load_config(None, env={})
    assert config.listen == "127.0.0.1:8080"
    assert (config.host, config.port) == ("127.0.0.1", 8080)
    assert config.upstream_url == "https://graph.facebook.com"
    assert config.state == "sqlite:///.sendgate/sendgate.db"
    assert config.policy_dir == "policies"
    assert config.mode == "enforce"
    assert config.on_engine_error == "deny"
    assert config.admin_token is None
    assert config.redis_url is None  # sessions and the guessing throttle in process
    assert config.allow_unknown_accounts is False
    assert config.max_body_bytes == 1024 * 1024
    assert [(r.method, r.path) for r in config.passthrough] == [("GET", "*"), ("POST", "/{phone_number_id}/media")]


def test_yaml_then_environment_overrides(tmp_path: Path) -> None:
    path = tmp_path / "sendgate.yaml"
    path.write_text(
        "listen: 0.0.0.0:9000\nmode: shadow\naccounts:\n"
        "  - {phone_number_id: '1', waba_id: '2', name: Acme, markets: [us, br]}\n"
        "log: {mask_recipients: true}\n"
    )
    config = load_config(path, env={"SENDGATE_MODE": "enforce", "SENDGATE_ADMIN_TOKEN": "s3cret"})
    assert config.port == 9000
    assert config.mode == "enforce"  # the environment wins over the file
    assert config.admin_token == "s3cret"
    assert config.account("1") == Account("1", "2", "Acme", ("US", "BR"))
    assert config.account("3") is None
    assert config.log.mask_recipients is True


def test_environment_values_are_yaml() -> None:
    config = load_config(None, env={"SENDGATE_ACCOUNTS": '[{phone_number_id: "5", waba_id: "6"}]',
                                    "SENDGATE_ALLOW_UNKNOWN_ACCOUNTS": "true", "SENDGATE_MAX_BODY_BYTES": "2048"})
    assert config.account("5") == Account("5", "6")
    assert config.allow_unknown_accounts is True
    assert config.max_body_bytes == 2048


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SENDGATE_MODE": "audit"}, "mode must be"),
        ({"SENDGATE_ON_ENGINE_ERROR": "maybe"}, "on_engine_error"),
        ({"SENDGATE_UPSTREAM_URL": "https://graph.facebook.com/v23.0"}, "upstream_url"),
        ({"SENDGATE_STATE": ".sendgate/sendgate.db"}, "state must be a URL"),
        ({"SENDGATE_ACCOUNTS": "[{waba_id: '1'}]"}, "phone_number_id"),
        ({"SENDGATE_ALLOW_UNKNOWN_ACCOUNTS": "'yes please'"}, "true or false"),
        ({"SENDGATE_LISTEN": "8080"}, "host:port"),
        ({"SENDGATE_REDIS_URL": "http://127.0.0.1:6379/0"}, "redis_url must be redis://host:port/db"),
        ({"SENDGATE_REDIS_URL": "redis://127.0.0.1:6379/zero"}, "redis_url"),
    ],
)
def test_bad_values_name_the_key(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, env=env)


def test_redis_url_is_read() -> None:
    assert load_config(None, env={"SENDGATE_REDIS_URL": "redis://10.0.0.5:6379/2"}).redis_url == "redis://10.0.0.5:6379/2"


def test_unknown_keys_and_unreadable_files(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("listne: 1.2.3.4:5\n")
    with pytest.raises(ConfigError, match="unknown config keys: listne"):
        load_config(path, env={})
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml", env={})
    assert isinstance(load_config(None, env={}), Config)


def test_direct_send_per_account_default_off() -> None:
    config = load_config(None, env={"SENDGATE_ACCOUNTS": '[{phone_number_id: "5", waba_id: "6", direct_send: true},'
                                                         ' {phone_number_id: "7", waba_id: "6"}]'})
    assert config.account("5") == Account("5", "6", direct_send=True)
    assert config.account("7") is not None and config.account("7").direct_send is False  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match=r"accounts\[0\].direct_send must be true or false"):
        load_config(None, env={"SENDGATE_ACCOUNTS": '[{phone_number_id: "5", waba_id: "6", direct_send: "yes"}]'})
