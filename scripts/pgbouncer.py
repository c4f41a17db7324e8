#!/usr/bin/env python3
"""PgBouncer in transaction pooling mode in front of one Postgres (devstack.pgbouncer), from the shell.

scripts/pgbouncer.py start --upstream postgresql://user@host:port/db --port 6432 [--state-dir D]
scripts/pgbouncer.py stop [--state-dir D]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devstack.pgbouncer import PgBouncer  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("--upstream", default=os.environ.get("MIGRATE_DATABASE_URL", ""))
    parser.add_argument("--port", type=int, default=6432)
    parser.add_argument("--pool-size", type=int, default=20)
    parser.add_argument("--state-dir", required=True)
    args = parser.parse_args(argv)
    state = Path(args.state_dir)
    if args.action == "stop":
        pidfile = state / "pgbouncer.pid"
        if pidfile.exists():
            os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
        return 0
    bouncer = PgBouncer(args.upstream, args.port, state_dir=state, pool_size=args.pool_size)
    bouncer.start()
    print(bouncer.url())
    return 0


if __name__ == "__main__":
    sys.exit(main())
