"""Admin use cases: the cluster health page and the actions applied to every worker."""

from __future__ import annotations

import logging

from flask import current_app

from .. import redis_conn
from ..admission import admission_status
from ..db import transaction
from ..errors import NotFound
from ..health import aggregate, heartbeat
from ..mail import service as mail_service
from ..payments import service as payments_service
from . import repository

log = logging.getLogger(__name__)

# Form value -> (cluster action, label shown on the page).
ACTIONS = {
    "reset_ai_queue": "Reset the AI queue",
    "reset_errors": "Reset error counters",
    "close_breakers": "Force-close AI circuit breakers",
}


def action_label(action: str) -> str:
    """The label of a known action; unknown ones are a 404."""
    if action not in ACTIONS:
        raise NotFound("No such admin action.")
    return ACTIONS[action]


def health_page() -> dict:
    """The cluster report plus the latest audited admin actions and the money/mail figures."""
    report = aggregate.detailed_health()
    with transaction() as cur:
        audit = repository.recent_audit(cur)
    admission = admission_status(report.get("workers", []))
    return {
        "report": report,
        "audit": audit,
        "actions": ACTIONS,
        "business": business_alerts(),
        "admission": admission,
    }


def business_alerts() -> dict:
    """Payment mismatches, refunds waiting, mail backlog and dead letters, with the alerts they raise."""
    figures = {**payments_service.payment_figures(), **mail_service.outbox_figures()}
    alerts = []
    if figures["mismatches_24h"]:
        alerts.append(f"{figures['mismatches_24h']} payment webhooks did not match their checkout (24 h)")
    if figures["refunds_pending"]:
        alerts.append(f"{figures['refunds_pending']} second payments wait for a refund")
    if figures["backlog"]:
        alerts.append(
            f"mail backlog: {figures['backlog']} mails due for over 5 minutes (is the mailer running?)"
        )
    if figures["dead"]:
        alerts.append(f"{figures['dead']} mails are dead letters: SMTP failed on every attempt")
    return {"figures": figures, "alerts": alerts}


def run_cluster_action(action: str, actor: str, remote_addr: str | None) -> int:
    """Audit the action and raise its generation in one step; every worker applies it on its
    next heartbeat, this one at once. Returns the new generation."""
    if action not in ACTIONS:
        raise NotFound("No such admin action.")
    app = current_app._get_current_object()
    heartbeat.heartbeat_state(app)  # know the generations before raising one
    client = redis_conn.redis_client(app)
    with transaction() as cur:
        # Redis inside the transaction: if the raise fails, the audit row rolls back with it.
        generation = heartbeat.request_cluster_action(client, action)
        repository.insert_audit(cur, actor, action, {"generation": generation, "remote_addr": remote_addr})
    heartbeat.apply_pending_actions(app)
    heartbeat.publish(app)
    aggregate.forget_cached_report()
    log.info("admin.cluster_action", extra={"action": action, "generation": generation})
    return generation
