"""Redis's cost of the per-page limits check: µs per EVALSHA and redis.call per view, scripts interleaved.

A typical question-page view of a person with a session: the session read plus the default page
limits (address-pages, person total, per page, and the visitor limits that do not apply), their
previous windows present, nothing refused. Each script given (default: the working tree's
limit_check.lua, and with --old a file such as `git show main:quizapp/security/limit_check.lua`)
runs in turn, several rounds, on the same Redis; the figures are INFO commandstats deltas.

    .venv/bin/python bench/limit_script.py --old /tmp/old_limit_check.lua [--rounds 6] [--calls 5000]
Redis: REDIS_URL, or QUIZAPP_REDIS_SOCKET (var/services.env); keys go to database --db (default 3).
On a shared box those timings move by ±30 %; `--valgrind` runs a throwaway redis-server under
callgrind instead and counts the CPU instructions Redis spends per EVALSHA (exact to ~1 %).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import redis
from limits import parse

ROOT = Path(__file__).resolve().parent.parent
NEW_SCRIPT = ROOT / "quizapp/security/limit_check.lua"
# (group, limit, scope, per person) as quizapp.security.limits resolves a GET of a page by default;
# amounts x 1000 so that no view is refused (a refusal takes a shorter path).
PAGE_LIMITS = [
    ("0", "3000000/minute", "address-pages", False),
    ("1", "1000000/hour", "pages", True),
    ("1", "60000/minute", "quiz.question", True),
    ("2", "60000/minute", "visitor", False),
    ("2", "600000/hour", "visitor", False),
]
INNER = ("get", "mget", "pttl", "exists", "incrby", "set", "rename", "expire")


def page_inputs(person: int) -> tuple[list, list]:
    """KEYS and ARGV as ratecheck.py builds them for one person's page view (sliding windows)."""
    keys, args = [f"session:bench{person}"], ["k", "s", "1"]
    for group, limit, scope, per_person in PAGE_LIMITS:
        item = parse(limit)
        owner = f"p:bench{person}" if per_person else "a:192.0.2.1"
        current = f"LIMITS:{{{item.key_for('quizapp', owner, scope)}}}"
        keys += [current, current + "/-1"]
        args += [group, item.amount, item.get_expiry()]
    return keys, args


def with_previous_windows(client, script_sha: str, people: int) -> None:
    """Every counter with a previous window, as for a person past their first minute on the site."""
    keys, args = page_inputs(0)
    client.evalsha(
        script_sha, len(keys), "", *keys[1:], "0", *args[1:]
    )  # the address's first, cookieless view
    for person in range(people):
        keys, args = page_inputs(person)
        client.set(keys[0], "x" * 300, ex=3600)
        client.evalsha(script_sha, len(keys), *keys, *args)
        for current, expiry in zip(keys[1::2], args[5::3], strict=True):
            if client.exists(current):  # its window is over: the next view rolls it
                client.set(current, 5, px=expiry * 1000 - 1000)
        client.evalsha(script_sha, len(keys), *keys, *args)


def command_stats(client) -> dict[str, tuple[int, int]]:
    stats = client.info("commandstats")
    found = {name[8:]: (v["calls"], v["usec"]) for name, v in stats.items() if name.startswith("cmdstat_")}
    cpu = client.info("cpu")  # CPU time moves less than commandstats' wall time on a busy box
    found["cpu"] = (0, (cpu["used_cpu_user"] + cpu["used_cpu_sys"]) * 1e6)
    return found


def measure(client, sha: str, calls: int, people: int) -> dict:
    inputs = [page_inputs(person) for person in range(people)]
    before = command_stats(client)
    started = time.perf_counter()
    for n in range(calls):
        keys, args = inputs[n % people]
        client.evalsha(sha, len(keys), *keys, *args)
    elapsed = time.perf_counter() - started
    after = command_stats(client)

    def delta(name):
        calls_after, usec_after = after.get(name, (0, 0))
        calls_before, usec_before = before.get(name, (0, 0))
        return calls_after - calls_before, usec_after - usec_before

    evalsha_calls, evalsha_usec = delta("evalsha")
    inner = {name: delta(name)[0] / evalsha_calls for name in INNER if delta(name)[0]}
    return {
        "usec_per_evalsha": evalsha_usec / evalsha_calls,
        "calls_per_view": sum(inner.values()),
        "inner": inner,
        "client_us": elapsed / calls * 1e6,
        "cpu_us": delta("cpu")[1] / calls,  # Redis's CPU per call: the command, I/O, event loop
    }


@contextlib.contextmanager
def redis_under_callgrind():
    """A throwaway redis-server (no persistence) under valgrind's callgrind: (client, pid, dumps)."""
    with tempfile.TemporaryDirectory() as tmp:
        socket = f"{tmp}/redis.sock"
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out.%p", "redis-server",
             "--port", "0", "--unixsocket", socket, "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            client = redis.Redis(unix_socket_path=socket)
            for _ in range(300):  # valgrind starts slowly
                with contextlib.suppress(redis.exceptions.ConnectionError, FileNotFoundError):
                    client.ping()
                    break
                time.sleep(0.1)
            yield client, server.pid, tmp
        finally:
            server.terminate()
            server.wait(timeout=30)


def instructions_per_call(client, pid: int, dumps: str, sha: str, calls: int, people: int) -> float:
    """Redis's instructions per EVALSHA, everything included (parsing, the script, the reply)."""
    inputs = [page_inputs(person) for person in range(people)]
    subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
    for n in range(calls):
        keys, args = inputs[n % people]
        client.evalsha(sha, len(keys), *keys, *args)
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    newest = max(glob.glob(f"{dumps}/out.*"), key=os.path.getmtime)
    with open(newest) as dump:
        total = next(int(line.split()[1]) for line in dump if line.startswith(("summary:", "totals:")))
    return total / calls


def connect(db: int) -> redis.Redis:
    if os.environ.get("REDIS_URL") and not os.environ.get("QUIZAPP_REDIS_SOCKET"):
        return redis.Redis.from_url(os.environ["REDIS_URL"], db=db)
    return redis.Redis(unix_socket_path=os.environ["QUIZAPP_REDIS_SOCKET"], db=db)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, help="the script to compare with (e.g. main's)")
    parser.add_argument("--new", type=Path, default=NEW_SCRIPT)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--people", type=int, default=200)
    parser.add_argument("--db", type=int, default=3)
    parser.add_argument("--valgrind", action="store_true", help="count instructions (callgrind)")
    options = parser.parse_args()
    if options.valgrind:
        count_instructions(options)
        return
    client = connect(options.db)
    if client.dbsize():
        raise SystemExit(f"database {options.db} is not empty: pick an unused one with --db")
    scripts = {"new": options.new.read_text()}
    if options.old:
        scripts = {"old": options.old.read_text(), **scripts}
    shas = {name: client.script_load(text) for name, text in scripts.items()}
    results: dict[str, list[dict]] = {name: [] for name in scripts}
    try:
        with_previous_windows(client, shas["new"], options.people)
        for round_number in range(options.rounds):
            for name, sha in shas.items():
                found = measure(client, sha, options.calls, options.people)
                results[name].append(found)
                inner = " ".join(f"{k} {v:.2f}" for k, v in found["inner"].items())
                print(
                    f"round {round_number + 1} {name}: {found['usec_per_evalsha']:.1f} µs/EVALSHA, "
                    f"{found['calls_per_view']:.2f} redis.call/view ({inner}), "
                    f"Redis CPU {found['cpu_us']:.0f} µs/call, client {found['client_us']:.0f} µs/call"
                )
    finally:
        client.flushdb()
    for name, rounds in results.items():
        usec = [r["usec_per_evalsha"] for r in rounds]
        client_us = [r["client_us"] for r in rounds]
        cpu_us = [r["cpu_us"] for r in rounds]
        print(
            f"{name}: µs/EVALSHA median {statistics.median(usec):.1f} "
            f"(range {min(usec):.1f}-{max(usec):.1f}), "
            f"redis.call/view {rounds[-1]['calls_per_view']:.2f}, "
            f"Redis CPU µs/call median {statistics.median(cpu_us):.1f} "
            f"(range {min(cpu_us):.1f}-{max(cpu_us):.1f}), "
            f"client µs/call median {statistics.median(client_us):.0f} "
            f"(range {min(client_us):.0f}-{max(client_us):.0f})"
        )


def count_instructions(options) -> None:
    scripts = {"new": options.new.read_text()}
    if options.old:
        scripts = {"old": options.old.read_text(), **scripts}
    with redis_under_callgrind() as (client, pid, dumps):
        shas = {name: client.script_load(text) for name, text in scripts.items()}
        with_previous_windows(client, shas["new"], options.people)
        for round_number in range(options.rounds):
            for name, sha in shas.items():
                found = instructions_per_call(client, pid, dumps, sha, options.calls, options.people)
                print(f"round {round_number + 1} {name}: {found / 1000:.1f} k instructions per EVALSHA")


if __name__ == "__main__":
    main()
