"""Postgres round trips per route: one visitor's walk, every Query message counted on the wire.

    set -a; . var/services.env; set +a
    python bench/round_trips.py [--code DIR] [-v]

A TCP proxy (devstack/pg_wire_counter.py) sits between the app and Postgres; the walk
(devstack/round_trip_walk.py) submits a quiz, submits it again, opens the result, asks for it by
mail, starts a checkout, pays it by webhook, opens the receipt and /readyz. --code /work/main
imports that checkout's quizapp instead (before/after in the same minutes); -v prints the texts.
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
    args = parser.parse_args()
    # This checkout's tools first; the quizapp of --code (imported lazily by build_app and walk).
    from bench.hot_profile import build_app, load_services_env
    from devstack.pg_wire_counter import PgWireCounter
    from devstack.round_trip_walk import walk

    code = args.code.resolve()
    sys.path.insert(0, str(code))
    os.chdir(code)
    load_services_env(ROOT)

    upstream = urlparse(os.environ["DATABASE_URL"])
    counter = PgWireCounter(upstream.hostname or "127.0.0.1", upstream.port or 5432).start()
    os.environ["DATABASE_URL"] = counter.url(os.environ["DATABASE_URL"])
    os.environ["DB_POOL_MIN"] = "0"
    try:
        app = build_app()
        seen = walk(app, counter)
    finally:
        counter.stop()
    print(f"code: {code}")
    print(f"{'route':14} {'round trips':>11}")
    for name, queries in seen.items():
        print(f"{name:14} {len(queries):11}")
        for text in queries if args.verbose else ():
            print(f"{'':16}{' '.join(text.split())[:150]}")


if __name__ == "__main__":
    main()
