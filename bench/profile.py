"""Where a page's time goes: py-spy on one gevent worker while wrk drives the page, summarised.

    python bench/profile.py [path] [--out raw.txt]     # default: a started quiz's first question

Prints the share of samples (inclusive) in Redis, limits, sessions, CSRF, Jinja and gunicorn's
HTTP code, then the top frames; docs/benchmarks-profile.md keeps the before/after summary.
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.efficiency import question_session, wrk
from bench.raised_limits import RAISED_LIMITS
from devstack.processes import VENV_BIN
from devstack.servers import Gunicorn

BUCKETS = {
    "Redis client (all commands)": r"redis/(client|connection|commands)",
    "limits (Flask-Limiter, limits, the check)": r"flask_limiter|limits/|security/limits|security/ratecheck",
    "session open/save": r"open_session|save_session|flask_session|quizapp/sessions",
    "CSRF": r"flask_wtf|csrf",
    "Jinja render": r"render_template|jinja2",
    "gunicorn HTTP parse/write": r"gunicorn/http",
}


def record(path: str | None, out: Path, seconds: int = 12) -> float:
    env = {
        "QUIZAPP_ENV": "development",
        **RAISED_LIMITS,
        "GUNICORN_ACCESS_LOG": "",
    }
    with Gunicorn("wsgi:app", workers=1, env=env) as app:
        cookie, question = question_session(app.url)
        headers = {"Cookie": cookie} if path is None else None
        url = app.url + (path or question)
        wrk(url, 2, 64, headers)
        worker = subprocess.run(["pgrep", "-P", str(app.proc.pid)], capture_output=True, text=True)
        pid = worker.stdout.split()[0]
        spy = subprocess.Popen(
            [str(VENV_BIN / "py-spy"), "record", "-p", pid, "-d", str(seconds), "-r", "200"]
            + ["-f", "raw", "-o", str(out), "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        rate = wrk(url, seconds - 2, 64, headers)
        spy.wait(timeout=60)
    return rate


def summarise(raw: Path, top: int = 12) -> str:
    total, inclusive, own = 0, collections.Counter(), collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        for name, pattern in BUCKETS.items():
            if re.search(pattern, stack):
                inclusive[name] += n
        own[stack.split(";")[-1]] += n
    lines = [f"{total} samples", "", "| where (inclusive) | share |", "| --- | --- |"]
    lines += [f"| {name} | {100 * inclusive[name] / total:.1f} % |" for name in BUCKETS]
    lines += ["", "| top frames (self) | share |", "| --- | --- |"]
    lines += [f"| `{frame[:110]}` | {100 * n / total:.1f} % |" for frame, n in own.most_common(top)]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("path", nargs="?")
    parser.add_argument("--out", default=str(ROOT / "var" / "profile.raw"))
    args = parser.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rate = record(args.path, out)
    print(f"{rate:.0f} req/s while profiled\n")
    print(summarise(out))
