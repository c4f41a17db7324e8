"""The admin password check off the event loop: gevent's threadpool, at most N checks per worker."""

from __future__ import annotations

import logging
import os
import time

import gevent
from gevent.lock import BoundedSemaphore
from limits import parse as parse_limit
from werkzeug.security import check_password_hash

from .. import redis_conn
from ..errors import TooManyRequests

log = logging.getLogger(__name__)

EXTENSION = "quizapp.password_checks"
HASH_THREAD_NICE = 10


class LoginBusy(TooManyRequests):
    message = "Too many sign-in attempts are being checked right now. Please try again in a moment."
    retry_after = 1


def hash_concurrency(config) -> int:
    """ADMIN_HASH_CONCURRENCY, or one check per two cores (at least one): more would only queue
    for the CPU, and the other half of the cores stays free for the event loops that serve pages."""
    return config.get("ADMIN_HASH_CONCURRENCY") or max(1, (os.cpu_count() or 1) // 2)


def _slots(app) -> BoundedSemaphore:
    # Per worker process (a fork gets the parent's object, unused there: it is built lazily).
    slots = app.extensions.get(EXTENSION)
    if slots is None or slots[0] != os.getpid():
        slots = app.extensions[EXTENSION] = (os.getpid(), BoundedSemaphore(hash_concurrency(app.config)))
    return slots[1]


def _check_at_low_priority(pw_hash: str, password: str) -> bool:
    """Runs in a pool thread. Linux nice values are per thread: this one yields the CPU to the
    event loop's thread, so a busy machine slows the guesses, not every other request."""
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) < HASH_THREAD_NICE:
            os.setpriority(os.PRIO_PROCESS, 0, HASH_THREAD_NICE)  # 0: this thread only
    except OSError:  # not permitted here: run at the normal priority
        pass
    return check_password_hash(pw_hash, password)


def take_global_login_slot(app) -> None:
    """RATELIMIT_LOGIN_GLOBAL: all addresses together (a guess storm from many), a fixed window."""
    item = parse_limit(app.config["RATELIMIT_LOGIN_GLOBAL"])
    window = item.get_expiry()
    key = f"admin:login:global:{int(time.time() // window)}"
    client = redis_conn.redis_client(app)
    pipe = client.pipeline(transaction=True)
    pipe.incr(key)
    pipe.expire(key, window + 1)
    count, _ = pipe.execute()
    if int(count) > item.amount:
        raise TooManyRequests(
            "Too many sign-in attempts from everywhere right now. Please try again in a minute.",
            retry_after=window,
        )


def refuse_when_busy(app) -> None:
    """Before the login limits and the form are looked at: every check slot taken means a 429 now."""
    if _slots(app).locked():
        raise LoginBusy()


def check_password_off_loop(app, pw_hash: str, password: str) -> bool:
    """scrypt/pbkdf2 release the GIL: in a pool thread they cost the event loop nothing.
    Beyond the bound, refuse at once (429) instead of queueing work an attacker can multiply."""
    slots = _slots(app)
    if not slots.acquire(blocking=False):
        log.debug("admin.login_busy")  # not per refusal at warning: a storm must not flood the log
        raise LoginBusy()
    try:
        return bool(gevent.get_hub().threadpool.apply(_check_at_low_priority, (pw_hash, password)))
    finally:
        slots.release()
