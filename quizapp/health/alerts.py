"""The alert registry: check functions that turn the cluster's figures into scored alerts.

A feature plugs in with one function and one registration line, e.g. in its init_app:

    def mail_backlog(ctx: HealthContext) -> Alert | None:
        backlog = ctx.probe("mail_backlog", mail.service.backlog)   # read once per report
        if backlog and backlog["pending"] >= 500:
            return Alert("mail_backlog", WARNING, f"{backlog['pending']} mails waiting",
                         "mail backlog: check quizapp-mailer.service and SMTP_URL", penalty=20)
        return None

    alerts.register_check(mail_backlog)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger(__name__)

CRITICAL = "critical"  # the service is failing its users: 503, page someone
WARNING = "warning"  # degraded or about to fail: 503, look today
INFO = "info"  # worth knowing; lowers the score, the endpoint stays 200
SEVERITIES = (CRITICAL, WARNING, INFO)
ALERTABLE = (CRITICAL, WARNING)


@dataclass(frozen=True)
class Alert:
    """One finding: what is wrong, how bad, what to do, and how much it costs the score."""

    name: str
    severity: str
    message: str
    recommendation: str
    penalty: int = 0

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")

    @property
    def alertable(self) -> bool:
        return self.severity in ALERTABLE

    def as_dict(self) -> dict:
        return {**asdict(self), "alertable": self.alertable}


@dataclass
class HealthContext:
    """What every check sees: live workers' heartbeats, dependency checks, config, cluster figures.

    `cluster` holds figures read once per report (Redis memory, queue sizes...); `probe` fills it
    lazily when the report runs live, and a pure test passes the figures in instead."""

    workers: list[dict]
    checks: Mapping[str, str]
    config: Mapping[str, Any]
    cluster: dict = field(default_factory=dict)
    app: Any = None  # the Flask app when the report runs live (probes may use its extensions)

    @property
    def live(self) -> bool:
        return self.app is not None

    def probe(self, name: str, read: Callable[[], Any]) -> Any:
        if name not in self.cluster:
            if not self.live:
                return None
            try:
                self.cluster[name] = read()
            except Exception:  # a probe that fails must not hide the other alerts
                log.warning("health.probe_failed", extra={"probe": name}, exc_info=True)
                self.cluster[name] = None
        return self.cluster[name]


Check = Callable[[HealthContext], "Alert | Iterable[Alert] | None"]
_CHECKS: list[Check] = []


def register_check(check: Check) -> Check:
    """Add a check (idempotent: create_app may run many times in one process). Usable as decorator."""
    if check not in _CHECKS:
        _CHECKS.append(check)
    return check


def registered_checks() -> list[Check]:
    return list(_CHECKS)


def evaluate(ctx: HealthContext, checks: Iterable[Check] | None = None) -> list[Alert]:
    """Run every check; a check that raises becomes a warning naming it, never a lost report."""
    found: list[Alert] = []
    for check in _CHECKS if checks is None else checks:
        try:
            result = check(ctx)
        except Exception:
            log.exception("health.check_failed", extra={"check": check.__name__})
            result = Alert(
                check.__name__,
                WARNING,
                f"health check {check.__name__} failed",
                "read the error log for health.check_failed",
                penalty=5,
            )
        if result is None:
            continue
        found.extend([result] if isinstance(result, Alert) else result)
    order = {severity: i for i, severity in enumerate(SEVERITIES)}
    return sorted(found, key=lambda a: (order[a.severity], -a.penalty))
