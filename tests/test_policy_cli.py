"""`sendgate policy eval` on a send body with the recipient's state given as options, and `--explain`."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from sendgate.cli import main

from .conftest import (
    AFTERNOON,
    CA_RECIPIENT,
    CATALOG,
    PHONE_NUMBER_ID,
    POLICIES,
    US_RECIPIENT,
    WABA_ID,
    template_message,
    text_message,
)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "sendgate.yaml"
    path.write_text(
        f"state: sqlite:///{tmp_path / 'state.db'}\npolicy_dir: {POLICIES}\n"
        f"accounts: [{{phone_number_id: '{PHONE_NUMBER_ID}', waba_id: '{WABA_ID}', name: Acme, markets: [US, CA]}}]\n"
    )
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name, value in {"text": text_message(), "sale": template_message("spring_sale", to=CA_RECIPIENT), "catalog": CATALOG}.items():
        out[name] = tmp_path / f"{name}.json"
        out[name].write_bytes(orjson.dumps(value))
    return out


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip().startswith("{") else {"raw": out}


def test_message_with_recipient_state_options(config: Path, files: dict[str, Path],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    at = str(AFTERNOON)  # 14:00 in Los Angeles
    code, out = run(capsys, "-c", str(config), "policy", "eval", "--message", str(files["text"]), "--now", at,
                    "--last-inbound", "2h", "--show-input")
    assert code == 0 and out["outcome"] == "allow" and out["facts_from"] == "options"
    assert out["input"]["recipient"]["last_inbound_at"] == AFTERNOON - 7200
    code, out = run(capsys, "-c", str(config), "policy", "eval", "--message", str(files["text"]), "--now", at,
                    "--last-inbound", "25h")
    assert code == 3 and [r["rule"] for r in out["deny"]] == ["window.closed"]

    sale = ["-c", str(config), "policy", "eval", "--message", str(files["sale"]), "--now", at,
            "--templates", str(files["catalog"])]
    code, out = run(capsys, *sale, "--consent", "opted_in", "--categories", "marketing")
    assert code == 0, out
    code, out = run(capsys, *sale, "--consent", "opted_in", "--categories", "marketing", "--marketing-sent", "3h")
    assert code == 3 and [r["rule"] for r in out["deny"]] == ["frequency.marketing"]
    code, out = run(capsys, *sale, "--consent", "opted_out", "--explain")
    assert code == 3 and [r["rule"] for r in out["deny"]] == ["consent.opted_out"]
    explain = out["explain"]
    assert explain["reasons_by_package"]["sendgate.consent"]["deny"] == ["consent.opted_out"]
    assert any(line.startswith("consent.rego:") and "deny contains" in line for line in explain["fired"])
    heads = [line.split(": ", 1) for line in explain["fired"]]
    assert any(where.startswith("lib.rego:") and head.startswith("marketing") for where, head in heads)
    code, out = run(capsys, *sale, "--consent", "opted_in", "--categories", "marketing", "--last-sent", "2s")
    assert code == 0, out  # inside the pair rate's burst
    code, out = run(capsys, *sale, "--consent", "opted_in", "--categories", "marketing",
                    "--last-sent", "1s", "2s", "2s", "2s", "2s")  # the burst of 5 used up
    assert code == 3 and [r["rule"] for r in out["defer"]] == ["frequency.pair_rate"] and out["retry_after"] == 4


def test_message_without_state_options_reads_the_store(config: Path, files: dict[str, Path],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["-c", str(config), "policy", "eval", "--message", str(files["text"]), "--now", str(AFTERNOON)]
    code, out = run(capsys, *argv)
    assert code == 3 and out["facts_from"].startswith("store sqlite:///")
    assert main(["-c", str(config), "inbound", "--phone-number-id", PHONE_NUMBER_ID, "--from", US_RECIPIENT,
                 "--timestamp", str(AFTERNOON - 60)]) == 0
    capsys.readouterr()
    assert run(capsys, *argv)[0] == 0


def test_eval_input_document_with_explain_and_errors(config: Path, files: dict[str, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "-c", str(config), "policy", "eval", "--message", str(files["text"]), "--now",
                    str(AFTERNOON), "--consent", "none", "--show-input")
    document = tmp_path / "doc.json"
    document.write_bytes(orjson.dumps(out["input"]))
    code, out = run(capsys, "-c", str(config), "policy", "eval", "--input", str(document), "--explain")
    assert code == 3 and out["explain"]["reasons_by_package"]["sendgate.window"]["deny"] == ["window.closed"]
    assert main(["-c", str(config), "policy", "eval", "--message", str(tmp_path / "none.json")]) == 2
    assert "none.json" in capsys.readouterr().err
    assert main(["-c", str(config), "policy", "eval"]) == 2
    assert "either --input" in capsys.readouterr().err
