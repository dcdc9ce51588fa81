"""The CLI works on the same store as the server, whether the server runs or not."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from sendgate.cli import main

from .conftest import AFTERNOON, CATALOG, PHONE_NUMBER_ID, POLICIES, US_RECIPIENT, WABA_ID


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "sendgate.yaml"
    path.write_text(f"state: sqlite:///{tmp_path / 'state.db'}\npolicy_dir: {POLICIES}\n")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_consent_set_show_import(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(capsys, "-c", str(config), "consent", "set", "+1 650 555 1234", "--status", "opted_in",
                     "--categories", "marketing", "utility", "--source", "pos", "--evidence", "signed slip 42")
    assert code == 0
    run(capsys, "-c", str(config), "consent", "set", US_RECIPIENT, "--status", "opted_out", "--source", "sms")
    code, out, _ = run(capsys, "-c", str(config), "consent", "show", US_RECIPIENT)
    shown = json.loads(out)
    assert code == 0 and shown["current"]["status"] == "opted_out"
    assert [r["evidence"] for r in shown["history"]] == ["signed slip 42", None]
    csv_file = tmp_path / "consent.csv"
    csv_file.write_text("recipient,status,categories\n16505550009,opted_in,utility\n")
    assert run(capsys, "-c", str(config), "consent", "import", str(csv_file))[1].strip() == "imported 1 consent records"
    code, _, err = run(capsys, "-c", str(config), "consent", "show", "15550000000")
    assert code == 1 and "no consent records" in err


def test_bad_input_exits_2_with_a_message(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("recipient,status\n1650,maybe\n")
    code, _, err = run(capsys, "-c", str(config), "consent", "import", str(bad))
    assert code == 2 and "line 2" in err and "status" in err
    code, _, err = run(capsys, "-c", str(tmp_path / "missing.yaml"), "log", "list")
    assert code == 2 and "cannot read config" in err


def test_templates_inbound_and_log(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    catalog = tmp_path / "templates.json"
    catalog.write_bytes(orjson.dumps(CATALOG))
    code, out, _ = run(capsys, "-c", str(config), "templates", "load", str(catalog), "--waba", WABA_ID)
    assert code == 0 and f"loaded {len(CATALOG['data'])} templates" in out
    code, out, _ = run(capsys, "-c", str(config), "templates", "show", "--waba", WABA_ID)
    assert json.loads(out)["data"][0]["name"] == "order_update"
    code, out, _ = run(capsys, "-c", str(config), "inbound", "--phone-number-id", PHONE_NUMBER_ID,
                       "--from", US_RECIPIENT, "--timestamp", str(AFTERNOON))
    assert code == 0 and "window open" in out
    code, out, _ = run(capsys, "-c", str(config), "log", "list", "--json")
    assert (code, out) == (0, "")


def _input_document(**overrides: object) -> dict[str, object]:
    document: dict[str, object] = {
        "now": AFTERNOON, "endpoint": "messages", "api_version": "v23.0",
        "gateway": {"mode": "enforce", "allow_unknown_accounts": False},
        "account": {"phone_number_id": PHONE_NUMBER_ID, "known": True, "waba_id": WABA_ID, "name": "Acme",
                    "markets": None},
        "message": {"type": "text", "recipient": US_RECIPIENT, "recipient_type": "individual", "is_status": False,
                    "context_message_id": None, "texts": ["hi"], "urls": [], "limited_texts": [], "media": None,
                    "interactive_type": None, "template": None},
        "recipient": {"id": US_RECIPIENT, "country": "US", "timezone": "America/Los_Angeles",
                      "local_time": {"hour": 14, "minute": 0, "weekday": 1}, "consent": None,
                      "last_inbound_at": None,
                      "history": {"last_sent_at": None, "pair_sent_at": [], "marketing_sent_at": []}},
        "template": None,
    }
    document.update(overrides)
    return document


def test_policy_eval(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "input.json"
    path.write_bytes(orjson.dumps(_input_document()))
    code, out, _ = run(capsys, "-c", str(config), "policy", "eval", "--input", str(path))
    result = json.loads(out)
    assert code == 3 and result["outcome"] == "deny"
    assert [r["rule"] for r in result["deny"]] == ["window.closed"]
    document = _input_document()
    document["recipient"]["last_inbound_at"] = AFTERNOON - 60  # type: ignore[index]
    path.write_bytes(orjson.dumps(document))
    code, out, _ = run(capsys, "-c", str(config), "policy", "eval", "--input", str(path))
    assert code == 0 and json.loads(out)["outcome"] == "allow"


def test_policy_test_reports_passes_and_failures(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "-c", str(config), "policy", "test")
    assert code == 0 and "PASS:" in out and "FAIL" not in out
    broken = tmp_path / "p"
    broken.mkdir()
    (broken / "main.rego").write_text("package sendgate\n\ndecision := {}\n")
    (broken / "main_test.rego").write_text(
        "package sendgate_test\n\nimport data.sendgate\n\ntest_ok if {\n\tsendgate.decision == {}\n}\n\n"
        "test_bad if {\n\tsendgate.decision == {\"allow\": true}\n}\n")
    code, out, _ = run(capsys, "policy", "test", "--dir", str(broken))
    assert code == 1
    assert "data.sendgate_test.test_bad: FAIL" in out and "PASS: 1/2" in out and "FAIL: 1/2" in out


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ("mysql://db/sendgate", "unsupported URL 'mysql://db/sendgate'; this sendgate knows postgresql://, sqlite://"),
        ("sqlite://relative.db", "a SQLite URL is sqlite:///path"),
    ],
)
def test_a_state_url_no_backend_opens_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], state: str, message: str
) -> None:
    """Only `open_store` parses state URLs: config checks the form, the backends say the rest."""
    path = tmp_path / "sendgate.yaml"
    path.write_text(f"state: {state}\npolicy_dir: {POLICIES}\n")
    code, out, err = run(capsys, "-c", str(path), "consent", "show", US_RECIPIENT)
    assert code == 2 and out == ""
    assert err.startswith("sendgate: state: ") and message in err
