"""The app package stays bandit -ll clean and ruff clean (ruff.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(*command):
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_bandit_finds_nothing_of_medium_or_high_severity():
    result = _run(str(BIN / "bandit"), "-q", "-ll", "-r", "quizapp")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_check_is_clean():
    result = _run(str(BIN / "ruff"), "check", "quizapp", "bench", "tests", "scripts")
    assert result.returncode == 0, result.stdout + result.stderr
