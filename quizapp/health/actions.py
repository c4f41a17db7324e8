"""The admin's cluster actions, each declared once: its label, its cluster part and its per-worker part."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask

from .. import metrics
from ..ai import service as ai_service
from ..errors import NotFound


@dataclass(frozen=True)
class ClusterAction:
    """One action for every worker of every instance; raising it is audited and counted (a generation)."""

    label: str  # the admin page's button and confirmation
    # State the cluster shares (Redis): run once, by the worker that takes the admin's request.
    on_cluster: Callable[[], object] | None = None
    # State each worker holds in memory: run by every worker, once per generation (heartbeat.py).
    in_each_worker: Callable[[Flask], object] | None = None


def _reset_error_counters(app: Flask) -> None:
    metrics.worker_counters(app).reset_errors()


# In the order the admin page offers them.
ACTIONS = {
    "reset_ai_queue": ClusterAction("Reset the AI queue", on_cluster=ai_service.reset_queue),
    "reset_errors": ClusterAction("Reset error counters", in_each_worker=_reset_error_counters),
    "close_breakers": ClusterAction(
        "Force-close AI circuit breakers", on_cluster=ai_service.force_close_breaker
    ),
}


def find(name: str) -> ClusterAction:
    """A known action; an unknown one is a 404."""
    if name not in ACTIONS:
        raise NotFound("No such admin action.")
    return ACTIONS[name]
