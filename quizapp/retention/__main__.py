"""`python -m quizapp.retention`: prune with the days from the environment (systemd timer, make prune)."""

from __future__ import annotations

import sys

from ..config import Config, ConfigError
from .service import RetentionPolicy, prune


def main() -> int:
    try:
        config = Config.from_env()
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    policy = RetentionPolicy(days=config.RETENTION_DAYS, audit_days=config.RETENTION_AUDIT_DAYS)
    deleted = prune(config.DATABASE_URL, policy)
    print(
        f"retention: kept {policy.days} days ({policy.audit_days} for audit_log); deleted "
        + ", ".join(f"{table} {count}" for table, count in deleted.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
