"""Admin use cases: the cluster health page and the actions applied to every worker."""

from __future__ import annotations

import logging

from flask import current_app

from ..admission import admission_status
from ..db import transaction
from ..health import actions, aggregate, checks, heartbeat
from ..mail import service as mail_service
from ..payments import service as payments_service
from . import repository

log = logging.getLogger(__name__)


def action_label(action: str) -> str:
    """The label of a known cluster action (quizapp/health/actions.py); unknown ones are a 404."""
    return actions.find(action).label


def health_page(fresh: bool = False) -> dict:
    """The cluster report plus the latest audited admin actions and the money/mail figures.

    `fresh`: right after an action, a report built now rather than the one cached for a second."""
    report = aggregate.detailed_health(fresh=fresh)
    with transaction() as cur:
        audit = repository.recent_audit(cur)
    admission = admission_status(report.get("workers", []))
    return {
        "report": report,
        "audit": audit,
        "actions": {name: action.label for name, action in actions.ACTIONS.items()},
        "business": business_alerts(),
        "admission": admission,
    }


def business_alerts() -> dict:
    """Payment mismatches, refunds waiting, mail backlog and dead letters, with the alerts they raise."""
    figures = {**payments_service.payment_figures(), **mail_service.outbox_figures()}
    found = checks.figure_alerts(figures, checks.PAYMENT_ALERTS + checks.MAIL_ALERTS)
    return {"figures": figures, "alerts": [alert.message for alert in found]}


def run_cluster_action(action: str, actor: str, remote_addr: str | None) -> int:
    """Audit the action and raise its generation in one step, run its cluster part once, and its
    per-worker part here at once (every other worker on its next heartbeat). Returns the generation."""
    spec = actions.find(action)
    app = current_app._get_current_object()
    with transaction() as cur:
        # Redis inside the transaction: if the raise fails, the audit row rolls back with it.
        generation = heartbeat.raise_action(app, action)
        repository.insert_audit(
            cur, actor=actor, action=action, detail={"generation": generation, "remote_addr": remote_addr}
        )
    if spec.on_cluster is not None:
        spec.on_cluster()
    heartbeat.apply_now(app)
    log.info("admin.cluster_action", extra={"action": action, "generation": generation})
    return generation
