"""Admission control: a bounded number of requests in flight per worker, served by priority,
and a cluster-wide FIFO waiting room for new visitors when the cluster is over capacity.

Contract for create_app (the one declared request pipeline: request id -> admission -> ...):
- init_app(app): the per-worker gate, the Redis store, the admin blueprint; registers no hook.
- begin_request: a before_request function; answers from the waiting room or takes a slot.
- finish_response: an after_request function; sets the signed admission cookie.
- end_request: a teardown_request function; gives the slot back (exactly once).
- admission_status(workers=None) -> dict: the cluster figures, for health pages and alerts.
- end_visit(): the quiz was submitted; frees the visitor's waiting-room slot (one Redis call).
"""

from __future__ import annotations

import logging
import time

import redis.exceptions
from flask import current_app, g, request

from .. import redis_conn
from . import service
from .gate import InFlightGate, Priority
from .repository import WaitingRoomStore

log = logging.getLogger(__name__)

__all__ = ["init_app", "begin_request", "finish_response", "end_request", "admission_status", "end_visit"]

end_visit = service.end_visit


def init_app(app) -> None:
    app.extensions["admission_gate"] = InFlightGate(app.config["ADMISSION_MAX_IN_FLIGHT"])
    app.extensions["admission_store"] = WaitingRoomStore(redis_conn.redis_client(app))
    from ..health import alerts
    from .views import bp

    app.register_blueprint(bp)
    alerts.register_check(admission_shedding_load)


LONG_WAIT_SECONDS = 300


def admission_shedding_load(ctx):
    """Health alert: new visitors are waiting (info), or have waited over 5 minutes (warning)."""
    from ..health.alerts import INFO, WARNING, Alert

    def read():
        return service.store(ctx.app).snapshot(now_ms=int(time.time() * 1000))

    figures = ctx.probe("admission", read)
    if not figures or not figures["queue_length"]:
        return None
    long_wait = figures["oldest_wait_s"] >= LONG_WAIT_SECONDS
    return Alert(
        "admission_shedding_load",
        WARNING if long_wait else INFO,
        f"admission shedding load: {figures['queue_length']} visitors in the waiting room, "
        f"oldest waiting {figures['oldest_wait_s']:.0f} s",
        "at capacity: raise the capacity on /admin/health if the pages stay fast, or add instances",
        penalty=15 if long_wait else 5,
    )


def begin_request():
    """Admit the request (possibly after waiting for a slot) or answer from the waiting room."""
    app = current_app._get_current_object()
    config = app.config
    if not config["ADMISSION_ENABLED"]:
        return None
    state = g._get_current_object()
    req = request._get_current_object()
    cookie = state.admission_read = service.read_cookie(req)  # finish_response reads it from here
    priority = service.classify(cookie, req.path)
    if priority == Priority.NEW:
        from .views import on_to_the_pool, too_many_arrivals, waiting_room  # most requests skip this

        ticket = cookie[1] if cookie and cookie[0] == "w" else None
        try:
            decision = service.ask_cluster(ticket, first_contact=cookie is None)
        except redis.exceptions.RedisError:
            decision = None  # fail open: the session store's own check answers the outage
            log.warning("admission.redis_unavailable")
        if decision is not None and decision.refused:
            return too_many_arrivals()
        if decision is not None and not decision.admitted:
            state.admission_cookie = service.cookie_value("w", decision.ticket)
            return waiting_room(service.waiting_answer(decision))
        if decision is not None:
            expiry = int(time.time()) + config["ADMISSION_PASS_SECONDS"]
            state.admission_cookie = service.cookie_value("p", decision.ticket, expiry)
            if config["ADMISSION_DOOR"] and cookie is not None:  # it keeps cookies: no redirect loop
                return on_to_the_pool(state.admission_cookie)
        priority = Priority.ADMITTED
    timeout = config["ADMISSION_QUEUE_TIMEOUT_MS"] / 1000
    started = priority == Priority.STARTED
    # A started quiz waits longer for a slot, ahead of everyone else, then runs anyway.
    if not service.gate(app).enter(priority, timeout * (4 if started else 1), admit_on_timeout=started):
        from .views import waiting_room

        return waiting_room(service.busy_answer(), kind="busy")
    state.admission_priority = priority
    return None


def finish_response(response):
    state = g._get_current_object()
    value = state.pop("admission_cookie", None)
    if value is None and state.get("admission_priority") is not None:
        cookie = state.get("admission_read")  # begin_request read it
        if service.started_flag_due(cookie):
            # The session says a quiz is started: flag it in the cookie, so later requests know it
            # cheaply; the first time, the visitor's slot is confirmed for the whole visit.
            expiry = int(time.time()) + current_app.config["ADMISSION_PASS_SECONDS"]
            value = service.cookie_value("s", service.held_ticket(cookie), expiry)
            if not cookie or cookie[0] != "s":
                service.confirm_visit(cookie)
    if value is not None:
        config = current_app.config
        response.set_cookie(
            service.COOKIE_NAME,
            value,
            max_age=config["ADMISSION_PASS_SECONDS"],
            httponly=True,
            samesite="Lax",
            secure=config["SESSION_COOKIE_SECURE"],
        )
    return response


def end_request(exc=None) -> None:
    priority = g.pop("admission_priority", None)
    if priority is not None:
        service.gate().leave(priority)


def admission_status(workers: list[dict] | None = None) -> dict:
    """Cluster figures: in flight, admitted/s, queue length, oldest wait, capacity, shedding."""
    if workers is None:
        from ..health import heartbeat

        workers = heartbeat.live_workers(redis_conn.redis_client(), current_app.config["HEARTBEAT_SECONDS"])
    return service.cluster_figures(workers)
