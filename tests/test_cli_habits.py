"""Issue 15, the command line people's habits expect: output options, global options after
the command, and the small misbehaviours, run in-process through `main(argv, env)`."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from stock_agent.cli import hoist_global_options, main
from stock_agent.core.profile import parse_amount, parse_threshold
from stock_agent.core.symbols import normalize_symbol
from stock_agent.errors import ExitStatus, InvalidInput
from tests.conftest import MARKET_DATA


def cli(env: dict[str, str], capsys: Any, *args: str) -> tuple[int, str, str]:
    code = main(list(args), env=env)
    out = capsys.readouterr()
    return code, out.out, out.err


# --------------------------------------------------------------------------- output


def test_analyze_format_csv_has_a_row_per_symbol(cli_env: dict[str, str], capsys: Any):
    code, out, _ = cli(cli_env, capsys, "analyze", "AAPL", "MSFT", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["symbol"] for r in rows] == ["AAPL", "MSFT"]
    assert rows[0]["as_of"] == "2026-11-20" and float(rows[0]["price"]) > 0
    assert "returns.1m" in rows[0] and "indicators.rsi_14" in rows[0]


def test_analyze_format_md_is_a_markdown_table(cli_env: dict[str, str], capsys: Any):
    code, out, _ = cli(cli_env, capsys, "analyze", "AAPL", "-f", "md")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("| Symbol | As of | Price |") and lines[1].startswith("|---|")
    assert lines[2].startswith("| AAPL | 2026-11-20 |") and len(lines) == 3


def test_analyze_json_flag_and_format_json_agree(cli_env: dict[str, str], capsys: Any):
    _, by_flag, _ = cli(cli_env, capsys, "analyze", "AAPL", "--json")
    _, by_format, _ = cli(cli_env, capsys, "analyze", "AAPL", "--format", "json")
    assert json.loads(by_flag) == json.loads(by_format)
    code, _, err = cli(cli_env, capsys, "analyze", "AAPL", "--json", "--format", "csv")
    assert code == ExitStatus.USAGE and "disagree" in err


def test_analyze_output_file_takes_its_format_from_the_suffix(
    cli_env: dict[str, str], capsys: Any, tmp_path: Path
):
    target = tmp_path / "report.csv"
    code, out, err = cli(cli_env, capsys, "analyze", "AAPL", "--output", str(target))
    assert code == 0 and out == "" and f"written: {target}" in err
    assert target.read_text().startswith("symbol,as_of,price,")
    table = tmp_path / "report.txt"
    assert cli(cli_env, capsys, "analyze", "AAPL", "-o", str(table))[0] == 0
    text = table.read_text()
    assert "AAPL" in text and "\x1b[" not in text


def test_color_always_and_never(cli_env: dict[str, str], capsys: Any):
    env = {k: v for k, v in cli_env.items() if k != "NO_COLOR"}
    _, colored, _ = cli(env, capsys, "analyze", "AAPL", "--color", "always")
    assert "\x1b[" in colored
    _, plain, _ = cli(env, capsys, "--no-color", "analyze", "AAPL", "--color", "always")
    assert "\x1b[" not in plain  # --no-color wins
    _, plain, _ = cli(env, capsys, "analyze", "AAPL", "--color", "never")
    assert "\x1b[" not in plain


def test_global_options_work_after_the_command(
    cli_env: dict[str, str], capsys: Any, tmp_path: Path
):
    env = {k: v for k, v in cli_env.items() if k != "STOCK_AGENT_DATA_DIR"}
    (tmp_path / "ZZZ.csv").write_text((MARKET_DATA / "AAPL.csv").read_text())
    code, out, _ = cli(env, capsys, "analyze", "ZZZ", "--json", "--data-dir", str(tmp_path))
    assert code == 0 and json.loads(out)[0]["symbol"] == "ZZZ"
    code, _, err = cli(cli_env, capsys, "analyze", "AAPL", "--json", "--timeout", "0")
    assert code == ExitStatus.USAGE and "--timeout" in err
    assert hoist_global_options(["analyze", "A", "--debug", "--", "--debug"]) == [
        "--debug",
        "analyze",
        "A",
        "--",
        "--debug",
    ]


# --------------------------------------------------------------------------- misbehaviours


def test_preferred_symbols_none_clears(cli_env: dict[str, str], capsys: Any):
    assert cli(cli_env, capsys, "profile", "add-symbol", "AAPL")[0] == 0
    code, out, _ = cli(cli_env, capsys, "profile", "set", "preferred_symbols", "none")
    assert code == 0 and "preferred_symbols  none" in out
    _, out, _ = cli(cli_env, capsys, "profile", "show", "--json")
    assert json.loads(out)["preferred_symbols"] == []


def test_remove_symbol_says_when_absent(cli_env: dict[str, str], capsys: Any):
    cli(cli_env, capsys, "profile", "add-symbol", "AAPL", "MSFT")
    code, out, err = cli(cli_env, capsys, "profile", "remove-symbol", "msft", "NVDA")
    assert code == 0
    assert err == "not in the preferred symbols: NVDA\n"
    assert out == "preferred symbols: AAPL\n"


@pytest.mark.parametrize("raw", ["BRK.B", "brk-b", " brk.b "])
def test_class_shares_are_one_symbol(raw: str):
    assert normalize_symbol(raw) == "BRK-B"


def test_one_letter_exchange_suffixes_stay():
    assert normalize_symbol("vod.l") == "VOD.L" and normalize_symbol("7203.t") == "7203.T"


def test_class_share_added_twice_is_one(cli_env: dict[str, str], capsys: Any):
    _, out, _ = cli(cli_env, capsys, "profile", "add-symbol", "BRK.B", "brk-b")
    assert out == "preferred symbols: BRK-B\n"


def test_a_class_share_file_named_with_a_dot_is_found(
    cli_env: dict[str, str], capsys: Any, tmp_path: Path
):
    (tmp_path / "BRK.B.csv").write_text((MARKET_DATA / "AAPL.csv").read_text())
    env = {**cli_env, "STOCK_AGENT_DATA_DIR": str(tmp_path)}
    code, out, _ = cli(env, capsys, "analyze", "brk.b", "--json")
    assert code == 0 and json.loads(out)[0]["symbol"] == "BRK-B"


def test_portfolio_size_amounts_and_currency(cli_env: dict[str, str], capsys: Any):
    assert parse_amount("2b") == 2e9 and parse_amount("250k") == 250_000
    with pytest.raises(InvalidInput, match="at most 1e\\+15"):
        parse_amount("2000000000000000")
    _, out, _ = cli(cli_env, capsys, "profile", "set", "portfolio_size", "2b")
    assert "portfolio_size     2,000,000,000.00 USD" in out
    _, out, _ = cli(cli_env, capsys, "profile", "set", "currency", "eur")
    assert "2,000,000,000.00 EUR" in out
    code, _, err = cli(cli_env, capsys, "profile", "set", "currency", "euro")
    assert code == ExitStatus.USAGE and "invalid currency" in err
    _, out, _ = cli(cli_env, capsys, "profile", "show", "--json")
    assert json.loads(out)["currency"] == "EUR"


def test_a_unicode_minus_is_a_minus(cli_env: dict[str, str], capsys: Any):
    assert parse_threshold("\u22125%") == -0.05
    code, out, _ = cli(cli_env, capsys, "profile", "set", "alert_threshold", "\u22123%")
    assert code == 0 and "-3.00%" in out


def test_profile_reset_without_a_terminal_needs_yes(cli_env: dict[str, str], capsys: Any):
    cli(cli_env, capsys, "profile", "add-symbol", "AAPL")
    code, _, err = cli(cli_env, capsys, "profile", "reset")
    assert code == ExitStatus.USAGE and "add --yes" in err
    _, out, _ = cli(cli_env, capsys, "profile", "show", "--json")
    assert json.loads(out)["preferred_symbols"] == ["AAPL"]
    assert cli(cli_env, capsys, "profile", "reset", "--yes")[1] == "profile of alice deleted\n"


def test_chat_session_and_new_is_a_usage_error(cli_env: dict[str, str], capsys: Any):
    code, _, err = cli(cli_env, capsys, "chat", "--session", "s1", "--new")
    assert code == ExitStatus.USAGE and "--session and --new" in err


def test_user_is_not_offered_where_it_does_nothing(cli_env: dict[str, str], capsys: Any):
    for command in (["cache", "stats"], ["cache", "clear"], ["store", "status"]):
        code, _, err = cli(cli_env, capsys, *command, "--user", "bob")
        assert code == ExitStatus.USAGE and "--user" in err, command


def test_store_status_does_not_start_a_stopped_embedded_server(
    cli_env: dict[str, str], capsys: Any, short_tmp: Path
):
    env = {k: v for k, v in cli_env.items() if k != "REDIS_URL"}
    env["STOCK_AGENT_HOME"] = str(short_tmp / "fresh")
    code, out, _ = cli(env, capsys, "store", "status")
    assert code == 0 and out.startswith("embedded store: stopped")
    code, out, _ = cli(env, capsys, "store", "status", "--json")
    assert json.loads(out)["state"] == "stopped"
    assert not (short_tmp / "fresh").exists()


def test_wording(cli_env: dict[str, str], capsys: Any):
    cli(cli_env, capsys, "cache", "clear")
    cli(cli_env, capsys, "analyze", "AAPL", "--json")
    _, out, _ = cli(cli_env, capsys, "cache", "clear")
    assert out.endswith(" removed\n") and " 1 entries" not in out
    code, _, err = cli({**cli_env, "STOCK_AGENT_AGENT_ID": "bad id"}, capsys, "profile", "show")
    assert code == ExitStatus.USAGE and "an agent id uses" in err


def test_a_narrated_analyze_shows_the_tables_then_the_narration(
    model_env: dict[str, str], openai_server: Any, capsys: Any
):
    from tests.openai_server import text, tool_call

    openai_server.queue(tool_call("analyze_stocks", {"symbols": ["AAPL"]}), text("AAPL is steady."))
    code, out, _ = cli(model_env, capsys, "analyze", "AAPL")
    assert code == 0
    tables, narration = out.rsplit("\n\n", 1)
    assert "AAPL" in tables and "RSI" in tables
    assert narration == "AAPL is steady.\n"


def test_model_option_on_analyze(model_env: dict[str, str], openai_server: Any, capsys: Any):
    from tests.openai_server import text

    openai_server.queue(text("fine."))
    code, _, _ = cli(model_env, capsys, "analyze", "AAPL", "-m", "other-model", "--narrate-only")
    assert code == 0
    assert openai_server.requests[0]["model"] == "other-model"


# --------------------------------------------------------------------------- models, keys, config


def test_keys_set_stores_the_key_private_and_lists_names_only(
    cli_env: dict[str, str], capsys: Any, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr("sys.stdin", io.StringIO("sk-secret-value-123\n"))
    code, out, _ = cli(cli_env, capsys, "keys", "set", "openai")
    path = Path(cli_env["STOCK_AGENT_CONFIG_DIR"]) / "keys.json"
    assert code == 0 and out == f"openai key saved in {path}\n"
    assert path.stat().st_mode & 0o777 == 0o600
    assert cli(cli_env, capsys, "keys", "path")[1] == f"{path}\n"
    assert cli(cli_env, capsys, "keys", "list")[1] == "openai\n"
    _, shown, _ = cli(cli_env, capsys, "config", "show")
    assert "sk-secret" not in shown
    assert any(
        line.split()[:3] == ["OPENAI_API_KEY", "****", "keys.json"] for line in shown.splitlines()
    )
    from stock_agent.config import load_settings

    assert load_settings(cli_env).openai_api_key == "sk-secret-value-123"
    # the environment still wins
    assert load_settings({**cli_env, "OPENAI_API_KEY": "env-key"}).openai_api_key == "env-key"


def test_config_env_holds_user_defaults_and_config_show_says_where(
    cli_env: dict[str, str], capsys: Any
):
    folder = Path(cli_env["STOCK_AGENT_CONFIG_DIR"])
    folder.mkdir(parents=True)
    (folder / "config.env").write_text("STOCK_AGENT_BENCHMARK=QQQ\nSTOCK_AGENT_USER=carol\n")
    env = {k: v for k, v in cli_env.items() if k != "STOCK_AGENT_USER"}
    _, out, _ = cli(env, capsys, "config", "show", "--json")
    shown = json.loads(out)
    assert shown["STOCK_AGENT_BENCHMARK"] == {"value": "QQQ", "source": "config.env"}
    assert shown["REDIS_URL"]["source"] == "environment"
    _, out, _ = cli(env, capsys, "profile", "show", "--json")
    assert json.loads(out)["user_id"] == "carol"
    _, out, _ = cli(cli_env, capsys, "profile", "show", "--json")
    assert json.loads(out)["user_id"] == "alice"  # the environment wins
    _, text_out, _ = cli(env, capsys, "config", "show")
    assert any(
        line.split() == ["STOCK_AGENT_TIMEOUT", "20", "default"] for line in text_out.splitlines()
    )


def test_models_lists_the_servers_models_and_marks_the_default(
    model_env: dict[str, str], capsys: Any
):
    code, out, _ = cli(model_env, capsys, "models")
    assert code == 0 and out == "* test-model\n"
    code, out, err = cli(model_env, capsys, "models", "default", "other-model")
    assert code == 0 and "default model: other-model" in out
    assert "still wins" in err  # STOCK_AGENT_MODEL is in this environment
    env = {k: v for k, v in model_env.items() if k != "STOCK_AGENT_MODEL"}
    assert cli(env, capsys, "models", "default")[1] == "other-model\n"
    _, out, _ = cli(env, capsys, "models")
    assert out == "  test-model\n* other-model  (the default; not listed by the server)\n"


def test_models_without_a_model_server(cli_env: dict[str, str], capsys: Any):
    code, _, err = cli(cli_env, capsys, "models")
    assert code == ExitStatus.MODEL and err.count("\n") == 1


def test_system_prompt_file_and_prompts_dir(
    model_env: dict[str, str], openai_server: Any, capsys: Any, tmp_path: Path
):
    from tests.openai_server import text

    own = tmp_path / "mine.md"
    own.write_text("You are terse. Today is $today.\n$profile\n")
    openai_server.queue(text("ok."), text("ok."), text("ok."))
    args = ("analyze", "AAPL", "--narrate-only")
    assert cli(model_env, capsys, *args, "--system-prompt", str(own))[0] == 0
    assert openai_server.requests[-1]["messages"][0]["content"].startswith("You are terse.")
    folder = tmp_path / "prompts"
    folder.mkdir()
    (folder / "system.md").write_text("From the folder. $profile\n")
    env = {**model_env, "STOCK_AGENT_PROMPTS_DIR": str(folder)}
    assert cli(env, capsys, *args)[0] == 0
    assert openai_server.requests[-1]["messages"][0]["content"].startswith("From the folder.")
    assert cli(model_env, capsys, *args)[0] == 0  # neither: the shipped prompt again
    assert not openai_server.requests[-1]["messages"][0]["content"].startswith("From the folder")
    code, _, err = cli(model_env, capsys, *args, "--system-prompt", str(tmp_path / "none.md"))
    assert code == ExitStatus.USAGE and "no system prompt file" in err


def test_doctor_checks_a_provider_package(cli_env: dict[str, str], capsys: Any):
    from stock_agent.ui.doctor import check_provider_package

    assert check_provider_package("openai:gpt-4.1")[0] == "ok"
    state, detail = check_provider_package("nosuchprovider:some-model")
    assert state == "FAIL" and "pip install langchain-nosuchprovider" in detail
    env = {**cli_env, "STOCK_AGENT_MODEL": "nosuchprovider:some-model"}
    code, out, _ = cli(env, capsys, "doctor")
    assert code == 1 and "langchain_nosuchprovider is not installed" in out
