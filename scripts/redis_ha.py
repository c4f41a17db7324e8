#!/usr/bin/env python3
"""A Redis primary, one replica and three Sentinels (devstack.redis_ha), from the shell.

  scripts/redis_ha.py start --state-dir var/redis-ha --base-port 26400 [--service quizapp]
  scripts/redis_ha.py stop --state-dir var/redis-ha
`start` prints the REDIS_SENTINELS value.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devstack.redis_ha import RedisHA, stop_from_state  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--base-port", type=int, default=26400)
    parser.add_argument("--service", default="quizapp")
    args = parser.parse_args(argv)
    if args.action == "stop":
        stop_from_state(Path(args.state_dir))
        return 0
    ha = RedisHA(args.state_dir, args.base_port, service=args.service).start()
    print(ha.sentinels)
    return 0


if __name__ == "__main__":
    sys.exit(main())
