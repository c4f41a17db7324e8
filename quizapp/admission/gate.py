"""Per-worker bound on requests in flight, with waiters served strictly by priority."""

from __future__ import annotations

import time
from collections import deque
from enum import IntEnum

from gevent.event import Event


class Priority(IntEnum):
    """Lower is served first when the worker is full."""

    CRITICAL = 0  # payment webhook, health and metrics, admin: never wait, never refused
    STARTED = 1  # a quiz-taker with a quiz in progress (or a result to see)
    ADMITTED = 2  # a visitor the cluster admitted (pass cookie) who has not started yet
    NEW = 3  # everyone else


class InFlightGate:
    """At most `limit` requests of one worker run at once; beyond that they wait in one FIFO
    per priority and a freed slot goes to the first waiter of the best priority.

    One gevent loop per worker: no locks needed. The figures are this worker's own.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.in_flight = 0
        self.critical_in_flight = 0
        self.waiters: dict[Priority, deque[Event]] = {p: deque() for p in Priority if p != Priority.CRITICAL}
        self.admitted_total = 0
        self.shed_total = 0
        self.waited_total = 0
        self._rate_mark = (time.monotonic(), 0)

    def waiting(self) -> int:
        return sum(len(q) for q in self.waiters.values())

    def _better_waiting(self, priority: Priority) -> bool:
        return any(self.waiters[p] for p in self.waiters if p <= priority)

    def enter(self, priority: Priority, timeout: float, admit_on_timeout: bool = False) -> bool:
        """Take a slot, waiting up to `timeout` seconds; False means refused (the slot is not held)."""
        if priority == Priority.CRITICAL:
            self.critical_in_flight += 1
            self.admitted_total += 1
            return True
        if self.in_flight < self.limit and not self._better_waiting(priority):
            self.in_flight += 1
            self.admitted_total += 1
            return True
        ticket = Event()
        queue = self.waiters[priority]
        queue.append(ticket)
        self.waited_total += 1
        # A slot handed over between the timeout firing and this greenlet running again still
        # counts (the timed-out wait() returns False although the ticket is set by then).
        if ticket.wait(timeout) or ticket.is_set():
            self.admitted_total += 1
            return True  # leave() handed its slot over: in_flight already counts it
        queue.remove(ticket)
        if admit_on_timeout:
            self.in_flight += 1  # a started quiz is never turned away: run over the bound
            self.admitted_total += 1
            return True
        self.shed_total += 1
        return False

    def leave(self, priority: Priority) -> None:
        if priority == Priority.CRITICAL:
            self.critical_in_flight -= 1
            return
        if self.in_flight <= self.limit:
            for queue in self.waiters.values():  # dicts keep insertion order: best priority first
                if queue:
                    queue.popleft().set()  # the slot passes on; in_flight is unchanged
                    return
        self.in_flight -= 1

    def set_limit(self, limit: int) -> None:
        self.limit = limit

    def figures(self) -> dict:
        """This worker's figures, with requests admitted per second since the previous call."""
        now = time.monotonic()
        then, count = self._rate_mark
        rate = (self.admitted_total - count) / (now - then) if now > then else 0.0
        self._rate_mark = (now, self.admitted_total)
        return {
            "limit": self.limit,
            "in_flight": self.in_flight + self.critical_in_flight,
            "waiting": self.waiting(),
            "admitted_total": self.admitted_total,
            "admitted_per_s": round(rate, 1),
            "shed_total": self.shed_total,
        }
