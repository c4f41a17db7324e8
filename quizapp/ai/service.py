"""The AI analysis use cases the rest of the app calls (the contract other packages rely on).

Contract (kept stable for quiz/, admin/ and health/):
- request_analysis(subject_id, prompt_inputs, user_key, paid=False) -> AnalysisStatus
    Called when a results page renders. Never blocks on the upstream API. Idempotent per subject_id.
    prompt_inputs holds no personal data: {"top_models": [{"id", "name", "score", "reasons",
    "description", "strengths", "risks", "first_steps"}...], "answers": {question_id: choice}}.
- analysis_status(subject_id) -> AnalysisStatus | None   (for the poll endpoint)
- metrics_snapshot() -> dict   (queue length, waits, calls, retries, fallbacks, breaker state)
- reset_queue() / force_close_breaker()   (admin actions, cluster-wide)
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import asdict, dataclass

import redis

from ..errors import BadRequest
from . import messages, prompts
from .runtime import enabled, get_runtime
from .store import DONE, FALLBACK

log = logging.getLogger(__name__)

SUBJECT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# A pending job past its deadline is finished by whoever reads it (finishing is compare-and-set),
# so on a starved CPU a late timer or sweeper costs the user nothing beyond the next poll.
LATE_GRACE_SECONDS = 0.0
# How often a pending results page asks again (the script's poll and the no-script refresh alike):
# the job's estimated wait, within these bounds, so a long queue is not polled every few seconds.
POLL_MIN_SECONDS = 3
POLL_MAX_SECONDS = 15


DISABLED_METRICS = {
    "enabled": False,
    "queue_length": 0,
    "local_queue_length": 0,
    "wait_p50_seconds": None,
    "wait_p95_seconds": None,
    "waits_sampled": 0,
    "calls": 0,
    "retries": 0,
    "fallbacks": 0,
    "dedup_hits": 0,
    "cache_hits": 0,
    "refused": 0,
    "breaker_state": "CLOSED",
    "window_used": 0,
    "window_limit": 0,
    "in_flight": 0,
    "in_flight_limit": 0,
}


@dataclass
class AnalysisStatus:
    state: str  # off | queued | running | done | fallback | refused
    text: str | None = None
    position: int | None = None
    eta_seconds: float | None = None
    fallback: bool = False
    message: str = ""

    @property
    def pending(self) -> bool:
        return self.state in ("queued", "running")

    @property
    def refresh_seconds(self) -> int | None:
        """When to ask again while pending: the estimated wait, bounded (a running call: soon)."""
        if not self.pending:
            return None
        if self.eta_seconds is None:  # running, or queued with no estimate yet
            return POLL_MIN_SECONDS
        return min(max(math.ceil(self.eta_seconds), POLL_MIN_SECONDS), POLL_MAX_SECONDS)

    def as_dict(self) -> dict:
        refresh = self.refresh_seconds
        return {**asdict(self), "pending": self.pending, "poll_ms": refresh * 1000 if refresh else None}


def request_analysis(subject_id: str, prompt_inputs: dict, user_key: str, paid: bool = False):
    """Queue an AI analysis (or return the existing one); never waits for the upstream API."""
    if not enabled():
        return AnalysisStatus(
            state="off",
            text=prompts.algorithmic_analysis(prompt_inputs),
            fallback=True,
            message=messages.OFF_MESSAGE,
        )
    _check_subject(subject_id)
    try:
        return _queue_analysis(subject_id, prompt_inputs=prompt_inputs, user_key=user_key, paid=paid)
    except redis.RedisError:
        # The results page still renders: the user gets the algorithmic analysis, unpersisted.
        log.warning("ai.redis_unavailable")
        text = prompts.algorithmic_analysis(prompt_inputs)
        return AnalysisStatus(state=FALLBACK, text=text, fallback=True, message=messages.UNAVAILABLE_MESSAGE)


def _queue_analysis(subject_id: str, *, prompt_inputs: dict, user_key: str, paid: bool) -> AnalysisStatus:
    rt = get_runtime()
    existing = analysis_status(subject_id)
    if existing is not None:
        if paid and existing.state == "queued" and rt.store.promote(subject_id):
            job = rt.store.read(subject_id)
            rt.queue.put(
                subject_id, inputs=job["inputs"], fingerprint=job["fp"], paid=True, deadline=job["deadline"]
            )
            return analysis_status(subject_id)
        return existing
    cfg = rt.config
    fingerprint = prompts.prompt_fingerprint(prompt_inputs, cfg["OPENAI_MODEL"])
    cached = rt.caller.cached(fingerprint)
    if cached is not None:
        rt.store.record_final(subject_id, state=DONE, text=cached, counter="cache_hits")
        return AnalysisStatus(state=DONE, text=cached)
    rt.store.count("requests")
    outcome, rank, deadline = rt.store.enqueue(
        subject_id,
        inputs=prompt_inputs,
        fingerprint=fingerprint,
        user_key=user_key,
        paid=paid,
        queue_max=cfg["AI_QUEUE_MAX"],
        pending_max=0 if paid else free_pending_limit(cfg),
        per_user=cfg["AI_PER_USER"],
        deadline_s=cfg["AI_DEADLINE_SECONDS"],
    )
    if outcome == "exists":
        return analysis_status(subject_id)
    if outcome == "refused":
        rt.store.count("refused")
        text = prompts.algorithmic_analysis(prompt_inputs)
        message = messages.refused_message(cfg["AI_PER_USER"])
        return AnalysisStatus(state="refused", text=text, fallback=True, message=message)
    if outcome == "full":
        text = prompts.algorithmic_analysis(prompt_inputs)
        message = messages.FALLBACK_MESSAGES["queue_full"]
        rt.store.record_final(subject_id, state=FALLBACK, text=text, message=message, counter="queue_full")
        return AnalysisStatus(state=FALLBACK, text=text, fallback=True, message=message)
    rt.queue.put(subject_id, inputs=prompt_inputs, fingerprint=fingerprint, paid=paid, deadline=deadline)
    position = rank + 1
    return AnalysisStatus(state="queued", position=position, eta_seconds=_eta(rt, position))


def analysis_status(subject_id: str):
    """The job's state from Redis (any worker may answer); None if there is no such job."""
    if not enabled() or not SUBJECT_ID.match(subject_id or ""):
        return None
    rt = get_runtime()
    job, position = rt.store.read_polled(subject_id)
    if job is None:
        return None
    state = job.get("state", "")
    if state in ("queued", "running") and time.time() > job["deadline"] + LATE_GRACE_SECONDS:
        # Its worker died or is stuck: the reader finishes it, exactly once cluster-wide.
        rt.queue.finish_fallback(subject_id, inputs=job.get("inputs"), reason="deadline")
        again, position = rt.store.read_polled(subject_id)
        job = again or job
        state = job.get("state", "")
    if state == "queued":
        return AnalysisStatus(state="queued", position=position, eta_seconds=_eta(rt, position or 1))
    if state == "running":
        return AnalysisStatus(state="running", message=messages.RUNNING_MESSAGE)
    return AnalysisStatus(
        state=state,
        text=job.get("text"),
        fallback=job["fallback"],
        message=job.get("message", ""),
    )


def metrics_snapshot() -> dict:
    """Cluster-wide figures from Redis, plus this process's local queue length."""
    if not enabled():
        return {**DISABLED_METRICS, "counters": {}}
    rt = get_runtime()
    waits = sorted(rt.store.recent_waits())
    counters = rt.store.counters()
    return {
        "enabled": True,
        "queue_length": rt.store.queue_length(),
        "local_queue_length": rt.queue.jobs.qsize(),
        "wait_p50_seconds": _percentile(waits, 50),
        "wait_p95_seconds": _percentile(waits, 95),
        "waits_sampled": len(waits),
        "calls": counters.get("calls", 0),
        "retries": counters.get("retries", 0),
        "fallbacks": counters.get("fallbacks", 0),
        "dedup_hits": counters.get("dedup_hits", 0),
        "cache_hits": counters.get("cache_hits", 0),
        "refused": counters.get("refused", 0),
        "counters": counters,
        "breaker_state": rt.breaker.state(),
        **rt.budget.usage(),
    }


def reset_queue() -> int:
    """Give every queued job (any worker, any instance) its fallback now; returns how many."""
    if not enabled():
        return 0
    rt = get_runtime()
    reset = 0
    for subject_id in rt.store.queued_subjects():
        job = rt.store.read(subject_id)
        if job is not None and job.get("state") == "queued":
            reset += rt.queue.finish_fallback(subject_id, inputs=job.get("inputs"), reason="reset")
    return reset


def force_close_breaker() -> None:
    if enabled():
        get_runtime().breaker.force_close()


def free_pending_limit(config) -> int:
    """How many jobs a free analysis may find not yet final (queued, held by a dispatcher waiting
    for a budget slot, or calling) and still be started before its deadline: the budget starts
    AI_RPM calls a window, so AI_RPM for every whole AI_WINDOW_SECONDS in AI_DEADLINE_SECONDS (at
    least one window: 10 with the defaults). Whole windows, because a window's entries free
    themselves only after the window (and its clock-skew guard) has passed since each call's
    answer. A job further back would only wait out its deadline and then get the algorithmic
    analysis: it gets it at once, marked, with the queue-full message, and like every fallback it
    asks the AI again on a visit after AI_FALLBACK_CACHE_SECONDS. A job whose prompt is already
    pending shares that call (no budget slot of its own) and is never turned away by this limit;
    paid reports go ahead of free jobs, so only AI_QUEUE_MAX bounds them. Without the budget's
    settings (a health report's config): AI_QUEUE_MAX."""
    try:
        windows = max(1, math.floor(config["AI_DEADLINE_SECONDS"] / config["AI_WINDOW_SECONDS"]))
        return max(1, int(config["AI_RPM"]) * windows)
    except (KeyError, TypeError, ZeroDivisionError):
        return config.get("AI_QUEUE_MAX", 500)


def _check_subject(subject_id: str) -> None:
    if not SUBJECT_ID.match(subject_id or ""):
        raise BadRequest(messages.BAD_SUBJECT_MESSAGE)


def _eta(rt, position: int) -> float:
    """Seconds until a job at `position` starts, if the budget stays the binding limit."""
    cfg = rt.config
    per_call = cfg["AI_WINDOW_SECONDS"] / cfg["AI_RPM"]
    return float(min(math.ceil(position * per_call), cfg["AI_DEADLINE_SECONDS"]))


def _percentile(values: list[float], pct: int) -> float | None:
    if not values:
        return None
    index = min(len(values) - 1, max(0, math.ceil(pct / 100 * len(values)) - 1))
    return round(values[index], 3)
