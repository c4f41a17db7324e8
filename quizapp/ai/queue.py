"""The per-process gevent side: a priority queue, dispatcher greenlets and an AsyncResult per job."""

from __future__ import annotations

import functools
import itertools
import logging
import os
import time
from dataclasses import dataclass, field

import gevent
from gevent.event import AsyncResult
from gevent.pool import Group
from gevent.queue import PriorityQueue

from . import prompts
from .calls import AnalysisUnavailable
from .messages import FALLBACK_MESSAGES
from .store import DEADLINES_KEY, DONE, FALLBACK, PENDING

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 0.5
CLEANUP_GRACE = 1.0


@dataclass(order=True)
class QueuedJob:
    priority: int
    seq: int
    subject_id: str = field(compare=False)
    inputs: dict = field(compare=False)
    fingerprint: str = field(compare=False)
    deadline: float = field(compare=False)


class AIQueue:
    """Dispatchers start lazily, once per process (after fork), on the first job they must run."""

    def __init__(self, runtime):
        self.rt = runtime
        self.pid = os.getpid()
        self.jobs: PriorityQueue = PriorityQueue()
        self.results: dict[str, AsyncResult] = {}
        self._seq = itertools.count()
        self._greenlets: list[gevent.Greenlet] = []
        self._loops: list = []
        # Every greenlet this queue starts, so stop() can end them all.
        self.group = Group()

    def ensure_started(self) -> None:
        """Spawn the dispatchers and the sweeper on first use; replace any that died."""
        if not self._greenlets:
            self._loops = [self._dispatch_forever] * self.rt.config["AI_DISPATCHERS"]
            self._loops.append(self._sweep_forever)
            self._greenlets = [self.group.spawn(loop) for loop in self._loops]
            log.info(
                "ai.dispatchers_started",
                extra={"count": len(self._loops) - 1, "pid": self.pid},
            )
            return
        for index, greenlet in enumerate(self._greenlets):
            if greenlet.dead:
                self._greenlets[index] = self.group.spawn(self._loops[index])

    def put(
        self,
        subject_id: str,
        *,
        inputs: dict,
        fingerprint: str,
        paid: bool,
        deadline: float,
    ) -> AsyncResult:
        self.ensure_started()
        job = QueuedJob(
            priority=0 if paid else 1,
            seq=next(self._seq),
            subject_id=subject_id,
            inputs=inputs,
            fingerprint=fingerprint,
            deadline=deadline,
        )
        # A promoted job (now paid) is queued again here; the first dispatcher to start it wins.
        result = self.results.setdefault(subject_id, AsyncResult())
        self.jobs.put(job)
        # Whatever the dispatchers are doing, a job still queued at its deadline gets the fallback.
        timer = gevent.Greenlet(self.expire, subject_id, inputs)
        self.group.add(timer)
        timer.start_later(max(0.0, deadline - time.time()))
        return result

    def wait(self, subject_id: str, timeout: float | None = None):
        result = self.results.get(subject_id)
        return None if result is None else result.get(timeout=timeout)

    def stop(self) -> None:
        self.group.kill(block=True, timeout=5)
        self._greenlets = []

    # -- finishing ------------------------------------------------------------------------------
    def finish_ai(self, subject_id: str, *, text: str, counter: str) -> None:
        self.rt.store.finish(subject_id, state=DONE, text=text, counter=counter)
        self._resolve(subject_id)

    def finish_fallback(self, subject_id: str, *, inputs: dict | None, reason: str) -> bool:
        """The scoring model's analysis, with the reason's message; False if the job had already ended."""
        text = prompts.algorithmic_analysis(inputs or {})
        finished = self.rt.store.finish(
            subject_id, state=FALLBACK, text=text, message=FALLBACK_MESSAGES[reason], counter=reason
        )
        if finished:
            log.info("ai.fallback", extra={"reason": reason})
        self._resolve(subject_id)
        return finished

    def expire(self, subject_id: str, inputs: dict) -> None:
        try:
            self.finish_fallback(subject_id, inputs=inputs, reason="deadline")
        except Exception:  # Redis down: the sweepers and the poll endpoint retry later
            log.warning("ai.expire_failed", exc_info=True)

    def _resolve(self, subject_id: str) -> None:
        """Wake local waiters once the job is final, whoever finished it (any worker)."""
        result = self.results.get(subject_id)
        if result is None:
            return
        job = self.rt.store.read(subject_id)
        state = job.get("state") if job else "expired"
        if state not in PENDING:
            self.results.pop(subject_id, None)
            if not result.ready():
                result.set(state)

    # -- the loops -----------------------------------------------------------------------------
    def _dispatch_forever(self) -> None:
        while True:
            job = self.jobs.get()
            try:
                self.run_job(job)
            except Exception:
                log.exception("ai.dispatch_failed")
                self.expire(job.subject_id, job.inputs)

    def run_job(self, job: QueuedJob) -> None:
        if job.deadline <= time.time():
            self._expire_stale(job)
            return
        if not self.rt.store.start(job.subject_id):
            # No-op if it already finished (reset, deadline).
            self.expire(job.subject_id, job.inputs)
            return
        caller = self.rt.caller
        cached = caller.cached(job.fingerprint)
        if cached is not None:
            self.finish_ai(job.subject_id, text=cached, counter="cache_hits")
            return
        if self.rt.breaker.is_open():
            self.finish_fallback(job.subject_id, inputs=job.inputs, reason="breaker_open")
            return
        token = caller.try_own(job.fingerprint, job.deadline)
        if token is None:
            # Another worker is calling upstream for the same prompt: wait off the dispatcher pool.
            shared = functools.partial(
                caller.await_shared, job.fingerprint, messages=_chat_messages(job), deadline=job.deadline
            )
            self.group.spawn(self._run_bounded, job, shared)
            return
        owned = functools.partial(
            caller.fetch_as_owner,
            job.fingerprint,
            messages=_chat_messages(job),
            token=token,
            deadline=job.deadline,
        )
        self._run_bounded(job, owned)

    def _expire_stale(self, job: QueuedJob) -> None:
        """A job still queued here past its deadline: finish it, unless its subject has been asked
        again since (a fallback expires after seconds and the next visit queues a new job)."""
        stored = self.rt.store.read(job.subject_id)
        if stored is not None and stored.get("deadline") == job.deadline:
            self.expire(job.subject_id, job.inputs)
        else:
            self._resolve(job.subject_id)

    def _run_bounded(self, job: QueuedJob, obtain) -> None:
        """Run `obtain` under the job's deadline; any failure ends in the marked fallback."""
        try:
            # The job's timer gives the user the fallback at the deadline itself; the grace lets
            # our own code stop on its deadline checks instead of being cut mid-bookkeeping.
            with gevent.Timeout(max(0.01, job.deadline - time.time()) + CLEANUP_GRACE):
                text, counter = obtain()
        except gevent.Timeout:
            self.finish_fallback(job.subject_id, inputs=job.inputs, reason="deadline")
        except AnalysisUnavailable as exc:
            self.finish_fallback(job.subject_id, inputs=job.inputs, reason=exc.reason)
        else:
            self.finish_ai(job.subject_id, text=text, counter=counter)

    def _sweep_forever(self) -> None:
        """Finish overdue jobs of any worker (even one killed since): no user waits forever."""
        while True:
            gevent.sleep(SWEEP_INTERVAL)
            try:
                for subject_id in self.rt.store.overdue_subjects():
                    job = self.rt.store.read(subject_id)
                    inputs = job.get("inputs") if job else None
                    if job is None or not self.finish_fallback(subject_id, inputs=inputs, reason="deadline"):
                        # Expired or finished already.
                        self.rt.redis.zrem(DEADLINES_KEY, subject_id)
            except Exception:
                log.warning("ai.sweep_failed", exc_info=True)


def _chat_messages(job: QueuedJob) -> list[dict]:
    """The prompt sent upstream for this job."""
    return prompts.build_messages(job.inputs)
