"""`analyze --no-llm` never loads the model stack, even with a model configured: the computed
report needs pandas for the analysis, never LangChain, LangGraph or the OpenAI client."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

MODEL_STACK = ("langchain", "langchain_core", "langchain_openai", "langgraph", "openai")


def test_analyze_no_llm_imports_no_model_stack(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "OPENAI_API_KEY": "sk-test-not-used", "STOCK_AGENT_MODEL": "gpt-4.1-mini"}
    probe = (
        "import sys\n"
        "from stock_agent.cli import main\n"
        "code = main(['analyze', 'AAPL', '--no-llm'])\n"
        f"loaded = sorted(m for m in {MODEL_STACK!r} if m in sys.modules)\n"
        "print('EXIT', code, 'LOADED', ','.join(loaded), 'PANDAS', 'pandas' in sys.modules,"
        " file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(cli_env["STOCK_AGENT_HOME"]).parent,
    )
    assert "AAPL" in result.stdout
    # pandas was needed (a first analysis computes); the model stack was not
    assert result.stderr.splitlines()[-1] == "EXIT 0 LOADED  PANDAS True", result.stderr
