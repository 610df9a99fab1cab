"""The wheel is complete: a non-editable install finds its prompts, run from any directory."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("hatchling", reason="hatchling (a test extra) builds the wheel")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("stock_agent-*.whl")
    return built


def test_wheel_carries_the_prompts_and_the_entry_point(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "stock_agent/prompts/system.md" in names
    assert "stock_agent/prompts/analyze.md" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert (
        "stock-agent = stock_agent.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    )


def test_unpacked_wheel_renders_its_prompts_from_another_directory(
    wheel: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import stock_agent.agent.prompts as p; from stock_agent.store.profile import Profile;"
        "assert p.__file__.startswith(sys.argv[1]), p.__file__;"
        "print(p.prompts_dir()); print(p.system_prompt(Profile(preferred_symbols=['AAPL'])))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(site)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.splitlines()[0] == str(site / "stock_agent" / "prompts")
    assert "preferred symbols: AAPL" in result.stdout
