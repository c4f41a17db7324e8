"""Admission use cases: classify a request, admit it or answer from the waiting room, set capacity, pace."""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import time
from dataclasses import dataclass

import redis.exceptions
from flask import current_app, request, session
from itsdangerous import BadSignature, Signer
from limits import parse_many

from ..admin.repository import insert_audit
from ..db import transaction
from ..errors import BadRequest
from ..paths import is_infrastructure
from ..security.addresses import address_group
from . import repository
from .gate import InFlightGate, Priority
from .repository import PACE_DERIVED, PACE_OFF, Decision, WaitingRoomStore

log = logging.getLogger(__name__)

COOKIE_NAME = "qa.adm"  # signed "s.0.<expiry>" (quiz started), "p.<ticket>.<expiry>" (admitted), "w.<ticket>"
# Beside the infrastructure paths: paid events and the operator are never kept waiting.
CRITICAL_PATHS = ("/pay/webhook",)
CRITICAL_PREFIXES = ("/admin", "/api/admin")
PAGES_PER_VISIT = 17  # landing, start, 12 questions, review, submit, result: one quiz visit
PROBATION_SECONDS = 30  # a slot not confirmed by a started quiz within this long frees itself
REFRESH_MAX_SECONDS = 120  # a capacity raise is noticed within 2 minutes, unless the queue is so
POLL_SHARE = 0.05  # long that polling at that interval would exceed this share of the pages served
REFRESH_SPREAD_PERCENT = 20  # refreshes spread by ticket over this share of the interval: no bursts
NO_TICKET = -1  # a started quiz whose visitor holds no waiting-room slot (admission off, Redis down)


@dataclass(frozen=True)
class WaitingAnswer:
    """What the waiting room tells a visitor (rendered as a page or as JSON)."""

    ticket: int
    position: int
    queue_length: int
    estimated_wait_s: int
    refresh_s: int


def gate(app=None) -> InFlightGate:
    return (app or current_app).extensions["admission_gate"]


def store(app=None) -> WaitingRoomStore:
    return (app or current_app).extensions["admission_store"]


class _KeyCachingSigner(Signer):
    """itsdangerous derives the HMAC key from the secret on every sign and unsign (one more HMAC
    each time); the admission cookie is read on every request, so derive it once per secret."""

    def derive_key(self, secret_key=None):
        cache = self.__dict__.setdefault("_derived", {})
        if secret_key not in cache:
            cache[secret_key] = super().derive_key(secret_key)
        return cache[secret_key]


@functools.lru_cache(maxsize=4)
def _signer_for(secret_key: str) -> Signer:
    return _KeyCachingSigner(secret_key, salt="quizapp.admission", digest_method=hashlib.sha256)


def _signer() -> Signer:
    return _signer_for(current_app.config["SECRET_KEY"])


def read_cookie(req=None) -> tuple[str, int, int] | None:
    """(kind, ticket, expiry) from a well-signed admission cookie, else None (req: the request)."""
    raw = (req or request).cookies.get(COOKIE_NAME)
    if not raw:
        return None
    return _verified_cookie(current_app.config["SECRET_KEY"], raw)


# A visitor sends the same cookie on every page until it is renewed, and each request reads it
# twice (admit, then flag): check its signature once per worker. Expiry is checked by the callers.
@functools.lru_cache(maxsize=8192)
def _verified_cookie(secret_key: str, raw: str) -> tuple[str, int, int] | None:
    try:
        value = _signer_for(secret_key).unsign(raw).decode()
        kind, ticket, *rest = value.split(".")
        return kind, int(ticket), int(rest[0]) if rest else 0
    except (BadSignature, ValueError, IndexError, UnicodeDecodeError):
        return None


def cookie_value(kind: str, ticket: int, expiry: int = 0) -> str:
    if kind not in ("p", "s"):
        return _signed_ticket(current_app.config["SECRET_KEY"], f"{kind}.{ticket}")
    return _signer().sign(f"{kind}.{ticket}.{expiry}").decode()


# A waiting visitor is given the same ticket cookie again on every refresh: sign it once per worker.
@functools.lru_cache(maxsize=8192)
def _signed_ticket(secret_key: str, payload: str) -> str:
    return _signer_for(secret_key).sign(payload).decode()


def classify(cookie, path: str | None = None) -> Priority:
    """Cheap: the path and the signed cookie (no session read: the limits step does that later)."""
    if path is None:
        path = request.path
    if is_infrastructure(path) or path in CRITICAL_PATHS or path.startswith(CRITICAL_PREFIXES):
        return Priority.CRITICAL
    if cookie and cookie[2] > time.time():
        if cookie[0] == "s":  # an attempt in progress or a result to see, flagged on a response
            return Priority.STARTED
        if cookie[0] == "p":
            return Priority.ADMITTED
    return Priority.NEW


def held_ticket(cookie) -> int:
    """The waiting-room slot a visitor holds, carried from the pass to the started-quiz cookie."""
    if cookie and cookie[0] in ("p", "s"):
        return cookie[1]
    return NO_TICKET


def end_visit() -> None:
    """The quiz was submitted: free the visitor's slot now, so the next in line comes in sooner."""
    ticket = held_ticket(read_cookie())
    if ticket == NO_TICKET or not current_app.config["ADMISSION_ENABLED"]:
        return
    try:
        visit_seconds = current_app.config["ADMISSION_VISIT_SECONDS"]
        store().release(ticket, now_ms=int(time.time() * 1000), visit_seconds=visit_seconds)
    except redis.exceptions.RedisError:
        log.warning("admission.release_failed", extra={"ticket": ticket})  # the slot's time runs out instead


def started_flag_due(cookie) -> bool:
    """Whether this response should (re)flag a started quiz: only if the session is already loaded."""
    current = session._get_current_object()
    if getattr(current, "pending", False) or not current.get("quiz"):
        return False
    if not cookie or cookie[0] != "s":
        return True
    return cookie[2] - time.time() < current_app.config["ADMISSION_PASS_SECONDS"] / 2


def ask_cluster(ticket: int | None, *, first_contact: bool) -> Decision:
    """The one Redis round trip of a new visitor; a first contact (no cookie) counts per address."""
    config = current_app.config
    counted = first_contact and config["RATELIMIT_ENABLED"]  # a rate limit: off when limits are off
    address = address_group(request.remote_addr, config["RATELIMIT_IPV6_PREFIX"]) if counted else None
    return store().admit(
        now_ms=int(time.time() * 1000),
        capacity=config["ADMISSION_CAPACITY"],
        probation_ms=PROBATION_SECONDS * 1000,
        ticket=ticket,
        address=address,
        arrivals_per_minute=arrivals_per_minute(config),
        pace_milli=pace_setting_milli(config["ADMISSION_PACE_PER_SECOND"]),
        burst_seconds=config["ADMISSION_PACE_BURST_SECONDS"],
        visit_seconds=config["ADMISSION_VISIT_SECONDS"],
    )


def pace_setting_milli(per_second: float) -> int:
    """A configured pace (visitors/s; PACE_DERIVED, PACE_OFF) as the milli-visitors/s Redis keeps."""
    return int(per_second) if per_second <= 0 else max(1, round(per_second * 1000))


@functools.lru_cache(maxsize=8)
def _per_minute(limit: str) -> int:
    item = parse_many(limit)[0]
    return max(1, round(item.amount * 60 / item.get_expiry()))


def arrivals_per_minute(config) -> int:
    """New cookieless arrivals one address may make a minute: the per-address limit on pages
    without a session (RATELIMIT_VISITOR_PAGES, sized for a classroom), applied before a ticket
    or slot is taken."""
    return _per_minute(config["RATELIMIT_VISITOR_PAGES"])


def confirm_visit(cookie) -> None:
    """A quiz started: hold the visitor's slot for the whole visit (it was on probation)."""
    ticket = held_ticket(cookie)
    if ticket == NO_TICKET or not current_app.config["ADMISSION_ENABLED"]:
        return
    now_ms = int(time.time() * 1000)
    until_ms = now_ms + current_app.config["ADMISSION_VISIT_SECONDS"] * 1000
    try:
        store().confirm(ticket, until_ms=until_ms, now_ms=now_ms, probation_ms=PROBATION_SECONDS * 1000)
    except redis.exceptions.RedisError:
        log.warning("admission.confirm_failed", extra={"ticket": ticket})  # its probation runs out instead


def waiting_answer(decision: Decision) -> WaitingAnswer:
    """Position, estimated wait and when to come back, from the decision alone (no more I/O).

    The estimate is when the visitor's turn should come by the slots themselves (Decision.turn_ms:
    the visit that must end first, at the measured mean visit length), and no sooner than the pace
    lets the visitors ahead in. A rate measured over the last seconds would not do: admissions
    come in waves (a cluster filled in one go frees in one go), and a visitor told a wait from a
    trough comes back long after their slot was handed out, which then idles on probation.

    When to come back: when the wait should be over (spread around it by ticket), so a waiting
    visitor asks once or twice, not every few seconds: the slot is kept for a visitor who comes
    back a little late (PROBATION_SECONDS), and one who comes back early is told the few seconds
    left. Never sooner than the minimum, nor later than refresh_cap() allows (a longer wait asks
    again then, and hears a fresher estimate).
    """
    config = current_app.config
    estimated = decision.turn_ms / 1000
    if decision.pace_milli > 0:
        estimated = max(estimated, decision.position * 1000 / decision.pace_milli)
    estimated = max(1, math.ceil(estimated))  # overdue visits: any moment now
    turnover = max(decision.capacity, 1) / config["ADMISSION_VISIT_SECONDS"]  # every slot frees in a visit
    cap = refresh_cap(decision.queue_length, max(decision.rate_milli / 1000, turnover))
    minimum = config["ADMISSION_REFRESH_MIN_SECONDS"]
    interval = min(cap, max(minimum, estimated))
    refresh = spread_refresh(interval, ticket=decision.ticket, minimum=minimum, cap=cap)
    return WaitingAnswer(
        ticket=decision.ticket,
        position=decision.position,
        queue_length=decision.queue_length,
        estimated_wait_s=estimated,
        refresh_s=refresh,
    )


def refresh_cap(queue_length: int, admit_rate: float) -> int:
    """The longest refresh interval: REFRESH_MAX_SECONDS, or longer for a queue so long that its
    visitors polling that often would send more than POLL_SHARE of the pages the admitted visitors
    do (admit_rate x PAGES_PER_VISIT a second): intervals grow with the queue. admit_rate > 0: the
    caller's is at least capacity / visit length."""
    budget = POLL_SHARE * admit_rate * PAGES_PER_VISIT  # waiting-room answers per second
    return max(REFRESH_MAX_SECONDS, math.ceil(queue_length / budget))


def spread_refresh(refresh: int, *, ticket: int, minimum: int, cap: int) -> int:
    """The refresh interval, offset by the ticket over a fifth of it (at least 3 distinct seconds).

    Visitors who arrive together are told the same interval and would come back in the same
    second, and again after that: a burst the door answers one after another (its p99 under
    overload). Consecutive tickets spread them out, centred on the interval: a visitor back after
    their turn leaves their slot idle a little, one back before it asks once more. Nobody is
    told less than the minimum, nor more than the cap: near them, the spread is all one way.
    """
    spread = max(2, refresh * REFRESH_SPREAD_PERCENT // 100)
    offset = max(ticket, 0) % (spread + 1)
    low = min(max(refresh - spread // 2, minimum), cap - spread)
    return max(low, minimum) + offset


def busy_answer() -> WaitingAnswer:
    """This worker stayed full for the whole queue timeout: come back in a moment, pass kept."""
    minimum = current_app.config["ADMISSION_REFRESH_MIN_SECONDS"]
    return WaitingAnswer(ticket=-1, position=1, queue_length=0, estimated_wait_s=minimum, refresh_s=minimum)


def set_capacity(capacity, *, actor: str, remote_addr: str | None) -> int:
    """Change the cluster capacity live (every worker reads it on its next admission), audited."""
    try:
        capacity = int(capacity)
    except (TypeError, ValueError):
        raise BadRequest("Capacity must be a whole number of visitors.") from None
    if not 1 <= capacity <= 1_000_000:
        raise BadRequest("Capacity must be between 1 and 1,000,000 visitors.")
    previous = store().live_capacity() or current_app.config["ADMISSION_CAPACITY"]
    with transaction() as cur:
        detail = {"capacity": capacity, "previous": previous, "remote_addr": remote_addr}
        insert_audit(cur, actor=actor, action="admission.capacity", detail=detail)
        # Redis last inside the transaction: if it fails, the audit row rolls back with it.
        store().set_capacity(capacity)
    log.info("admission.capacity_changed", extra={"capacity": capacity, "previous": previous})
    return capacity


def parse_pace(value) -> int:
    """An admin's pace: "auto" (from the capacity), "off", or visitors per second; as milli-visitors/s."""
    text = str(value or "").strip().lower()
    if text in ("auto", "off"):
        return PACE_DERIVED if text == "auto" else PACE_OFF
    try:
        per_second = float(text)
    except ValueError:
        raise BadRequest('Pace must be "auto", "off" or a number of visitors per second.') from None
    if not 0 < per_second <= 1_000_000:  # also refuses nan and inf
        raise BadRequest("Pace must be above 0 and at most 1,000,000 visitors per second.")
    return pace_setting_milli(per_second)


def set_pace(value, *, actor: str, remote_addr: str | None) -> int:
    """Change the admission pace live (every worker reads it on its next admission), audited."""
    pace_milli = parse_pace(value)
    live = store().live_pace()
    previous = (
        live if live is not None else pace_setting_milli(current_app.config["ADMISSION_PACE_PER_SECOND"])
    )
    with transaction() as cur:
        detail = {
            "pace": pace_label(pace_milli),
            "previous": pace_label(previous),
            "remote_addr": remote_addr,
        }
        insert_audit(cur, actor=actor, action="admission.pace", detail=detail)
        # Redis last inside the transaction: if it fails, the audit row rolls back with it.
        store().set_pace(pace_milli)
    log.info("admission.pace_changed", extra={"pace": detail["pace"], "previous": detail["previous"]})
    return pace_milli


def pace_label(pace_milli: int) -> str:
    """A pace setting as the admin types it: "auto", "off" or visitors per second."""
    if pace_milli == PACE_DERIVED:
        return "auto"
    return "off" if pace_milli == PACE_OFF else f"{pace_milli / 1000:g}"


def worker_figures(app) -> dict:
    """This worker's gate figures for its heartbeat."""
    return gate(app).figures()


def cluster_figures(workers: list[dict]) -> dict:
    """The admin view: in flight and requests admitted per second over live workers, plus the queue."""
    config = current_app.config
    figures = [w.get("admission") or {} for w in workers]
    snapshot = store().snapshot(now_ms=int(time.time() * 1000))
    capacity = snapshot["live_capacity"] or config["ADMISSION_CAPACITY"]
    setting = snapshot.pop("live_pace_milli")
    if setting is None:
        setting = pace_setting_milli(config["ADMISSION_PACE_PER_SECOND"])
    visit_seconds = config["ADMISSION_VISIT_SECONDS"]
    pace = repository.pace_in_effect(setting, capacity=capacity, visit_seconds=visit_seconds)
    return {
        "enabled": config["ADMISSION_ENABLED"],
        "capacity": capacity,
        "max_in_flight_per_worker": config["ADMISSION_MAX_IN_FLIGHT"],
        "in_flight": sum(f.get("in_flight", 0) for f in figures),
        "waiting_in_workers": sum(f.get("waiting", 0) for f in figures),
        "requests_admitted_per_s": round(sum(f.get("admitted_per_s", 0) for f in figures), 1),
        "shed_total": sum(f.get("shed_total", 0) for f in figures),
        **snapshot,
        "pace_setting": pace_label(setting),
        "pace_per_s": round(pace / 1000, 2),  # in effect; 0: not paced
        "pace_burst": repository.burst_of(pace, burst_seconds=config["ADMISSION_PACE_BURST_SECONDS"]),
        "shedding": snapshot["queue_length"] > 0,
    }
