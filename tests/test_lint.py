"""The app package stays bandit -ll clean and ruff clean (ruff.toml)."""

from __future__ import annotations

import re
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
    result = _run(str(BIN / "ruff"), "check", "quizapp", "devstack", "bench", "tests", "scripts")
    assert result.returncode == 0, result.stdout + result.stderr


def test_tools_never_import_tests_and_the_app_never_imports_tools():
    """scripts/, bench/ and devstack/ never import tests/; quizapp/ (which ships) imports neither."""
    banned = {"scripts": "tests", "bench": "tests", "devstack": "tests", "quizapp": "tests|devstack"}
    found = []
    for folder, names in banned.items():
        pattern = re.compile(rf"^\s*(?:from|import) ({names})\b", re.MULTILINE)
        found += [
            f"{path}: {name}"
            for path in (ROOT / folder).rglob("*.py")
            for name in pattern.findall(path.read_text())
        ]
    assert not found
