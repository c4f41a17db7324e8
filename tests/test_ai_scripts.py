"""The ai package's shared pieces stay shared: one Redis clock for every script, words for every reason."""

import ast
import re
from pathlib import Path

from quizapp.ai import breaker, budget, calls, messages, store
from quizapp.ai.lua import LUA_NOW

AI = Path(messages.__file__).parent


def test_every_script_that_reads_the_clock_starts_with_the_shared_snippet():
    scripts = {
        f"{module.__name__}.{name}": value
        for module in (breaker, budget, calls, store)
        for name, value in vars(module).items()
        if name.isupper() and isinstance(value, str) and "redis.call(" in value
    }
    clocked = {name for name, text in scripts.items() if re.search(r"\bnow\b", text)}
    assert clocked, "no script reads the clock: the test no longer looks at the right modules"
    assert {name for name in clocked if not scripts[name].startswith(LUA_NOW)} == set()
    assert [name for name, text in scripts.items() if text.count("redis.call('TIME')") > 1] == []
    assert [
        path.name for path in AI.glob("*.py") if path.name != "lua.py" and "'TIME'" in path.read_text()
    ] == []


def test_every_fallback_reason_has_words_for_the_reader():
    reasons = set()
    for path in AI.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name == "AnalysisUnavailable" and node.args and isinstance(node.args[0], ast.Constant):
                reasons.add(node.args[0].value)
            reasons |= {
                kw.value.value
                for kw in node.keywords
                if kw.arg == "reason" and isinstance(kw.value, ast.Constant)
            }
    assert {"deadline", "breaker_open", "upstream_error", "reset"} <= reasons
    assert reasons - set(messages.FALLBACK_MESSAGES) == set()
    assert all(text.endswith(".") for text in messages.FALLBACK_MESSAGES.values())
