"""Postgres round trips per route: one visitor's walk, every Query message counted on the wire.

    set -a; . var/services.env; set +a
    python bench/round_trips.py [--code DIR] [-v] [--cpu N [--rounds 5]]

A TCP proxy (devstack/pg_wire_counter.py) sits between the app and Postgres; the walk
(devstack/round_trip_walk.py) submits a quiz, submits it again, opens the result, asks for it by
mail, starts a checkout, pays it by webhook, opens the receipt and /readyz. --code /work/main
imports that checkout's quizapp instead (before/after in the same minutes); -v prints the texts.
--cpu N then times N calls (no proxy, psycopg2 green as in gunicorn) of the result page's read and
of the submit's quota take: process CPU and wall per call.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/profile.py would shadow the standard library's profile module.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from gevent import monkey

monkey.patch_all()
from psycogreen.gevent import patch_psycopg  # noqa: E402

patch_psycopg()  # as wsgi.py does: the proxy's greenlets run while psycopg2 waits

import argparse
import os
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout whose quizapp to import")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each Query text")
    parser.add_argument("--cpu", type=int, default=0, metavar="N", help="then time N of each DB step")
    parser.add_argument("--rounds", type=int, default=5, help="with --cpu: timed rounds, the best is shown")
    args = parser.parse_args()
    # This checkout's tools first; the quizapp of --code (imported lazily by build_app and walk).
    from bench.hot_profile import build_app, load_services_env
    from devstack.pg_wire_counter import PgWireCounter
    from devstack.round_trip_walk import walk

    code = args.code.resolve()
    sys.path.insert(0, str(code))
    os.chdir(code)
    load_services_env(ROOT)

    direct = os.environ["DATABASE_URL"]
    upstream = urlparse(direct)
    counter = PgWireCounter(upstream.hostname or "127.0.0.1", upstream.port or 5432).start()
    os.environ["DATABASE_URL"] = counter.url(direct)
    os.environ["DB_POOL_MIN"] = "0"
    try:
        app = build_app()
        seen, public_id = walk(app, counter)
    finally:
        counter.stop()
    print(f"code: {code}")
    print(f"{'route':14} {'round trips':>11}")
    for name, queries in seen.items():
        print(f"{name:14} {len(queries):11}")
        for text in queries if args.verbose else ():
            print(f"{'':16}{' '.join(text.split())[:150]}")
    if args.cpu:
        os.environ["DATABASE_URL"] = direct  # no proxy: its greenlets would count as the app's CPU
        time_db_steps(build_app(), public_id, count=args.cpu, rounds=args.rounds)


def time_db_steps(app, public_id: str, *, count: int, rounds: int) -> None:
    """Process CPU and wall per call of the result page's read and the submit's quota take."""
    import time
    from datetime import date

    from quizapp import db
    from quizapp.quiz import repository, service

    steps = {
        "result read": lambda: service.load_attempt(public_id),
        "quota take": lambda: db.run_in_transaction(
            repository.take_quota, client_key="round-trips", day=date(2000, 1, 1), daily_quota=10**9
        ),
    }
    print(f"{'DB step':14} {'best CPU µs':>11} {'median CPU':>11} {'median wall':>12}  ({count} x {rounds})")
    with app.app_context():
        for name, step in steps.items():
            for _ in range(min(200, count)):
                step()
            samples = []
            for _ in range(rounds):
                cpu, wall = time.process_time(), time.perf_counter()
                for _ in range(count):
                    step()
                samples.append(
                    ((time.process_time() - cpu) / count * 1e6, (time.perf_counter() - wall) / count * 1e6)
                )
            samples.sort()
            cpu, wall = samples[len(samples) // 2]
            print(f"{name:14} {samples[0][0]:11.0f} {cpu:11.0f} {wall:12.0f}", flush=True)


if __name__ == "__main__":
    main()
