"""Each worker publishes its figures to Redis every HEARTBEAT_SECONDS and applies cluster actions."""

from __future__ import annotations

import json
import logging
import os
import time

import gevent
import redis.exceptions
from flask import Flask

from .. import metrics, redis_conn, security
from ..admission import service as admission_service
from ..ai import service as ai_service
from .actions import ACTIONS

log = logging.getLogger(__name__)

WORKER_KEY = "health:worker:{}"
WORKER_INDEX = "health:workers"  # sorted set: worker id -> last heartbeat (unix time)
ACTIONS_KEY = "health:actions"  # hash: action -> generation, raised by an admin
TTL_FACTOR = 3


class HeartbeatState:
    """This worker's identity, the action generations it has applied, and its greenlet."""

    def __init__(self, app: Flask, applied: dict[str, int]):
        self.worker_id = f"{app.config['INSTANCE_NAME']}:{os.getpid()}"
        self.started = time.time()
        self.applied = applied
        self.greenlet: gevent.Greenlet | None = None


def action_generations(client) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in client.hgetall(ACTIONS_KEY).items()}


def heartbeat_state(app: Flask) -> HeartbeatState:
    """The state of this worker, created once: past actions count as applied (never replayed)."""
    state = app.extensions.get("heartbeat")
    if state is None or state.worker_id.rsplit(":", 1)[1] != str(os.getpid()):
        try:
            applied = action_generations(redis_conn.redis_client(app))
        except redis.exceptions.RedisError:
            applied = {}
        state = HeartbeatState(app, applied)
        app.extensions["heartbeat"] = state
    return state


def resident_memory_bytes() -> int:
    try:
        with open("/proc/self/statm") as handle:
            resident_pages = int(handle.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def collect_figures(app: Flask) -> dict:
    """Everything the cluster view needs from this worker (call inside an app context)."""
    state = heartbeat_state(app)
    pool = app.extensions.get("db_pool")
    ai = ai_service.metrics_snapshot()
    return {
        "worker": state.worker_id,
        "instance": app.config["INSTANCE_NAME"],
        "pid": os.getpid(),
        "started": state.started,
        "ts": time.time(),
        "pool": pool.stats() if pool is not None else {},
        "ai": ai,
        "breaker": str(ai.get("breaker_state", "CLOSED")).upper(),
        "http": metrics.worker_counters(app).snapshot(),
        "limiter": security.limiter_status(),
        "rss_bytes": resident_memory_bytes(),
        "applied": dict(state.applied),
        "admission": admission_service.worker_figures(app) if "admission_gate" in app.extensions else {},
    }


def publish(app: Flask) -> dict:
    """Write this worker's figures under a key that expires unless refreshed."""
    figures = collect_figures(app)
    ttl = max(1, round(app.config["HEARTBEAT_SECONDS"] * TTL_FACTOR))
    key = WORKER_KEY.format(figures["worker"])
    pipe = redis_conn.redis_client(app).pipeline(transaction=True)
    pipe.hset(key, mapping={"figures": json.dumps(figures), "ts": figures["ts"]})
    pipe.expire(key, ttl)
    pipe.zadd(WORKER_INDEX, {figures["worker"]: figures["ts"]})
    pipe.execute()
    return figures


def apply_pending_actions(app: Flask) -> list[str]:
    """Run the per-worker part of every action whose generation rose since this worker last looked."""
    state = heartbeat_state(app)
    applied_now = []
    for action, generation in action_generations(redis_conn.redis_client(app)).items():
        spec = ACTIONS.get(action)
        if spec is None or generation <= state.applied.get(action, 0):
            continue
        if spec.in_each_worker is not None:
            spec.in_each_worker(app)
        state.applied[action] = generation
        applied_now.append(action)
        log.info("health.action_applied", extra={"action": action, "generation": generation})
    return applied_now


def beat_once(app: Flask) -> dict:
    with app.app_context():
        apply_pending_actions(app)
        return publish(app)


def _run(app: Flask) -> None:
    interval = app.config["HEARTBEAT_SECONDS"]
    while True:
        try:
            beat_once(app)
        except Exception:  # a Redis outage must not kill the loop; the next beat retries
            log.warning("health.heartbeat_failed", exc_info=True)
        gevent.sleep(interval)


def start_heartbeat(app: Flask) -> gevent.Greenlet:
    """Start this worker's heartbeat greenlet (gunicorn post_worker_init)."""
    with app.app_context():
        state = heartbeat_state(app)
    if state.greenlet is None or state.greenlet.dead:
        state.greenlet = gevent.spawn(_run, app)
    return state.greenlet


def stop_heartbeat(app: Flask) -> None:
    """Stop the greenlet and withdraw this worker from the cluster view (gunicorn worker_exit)."""
    state = app.extensions.get("heartbeat")
    if state is None:
        return
    if state.greenlet is not None:
        state.greenlet.kill(block=False)
    try:
        pipe = redis_conn.redis_client(app).pipeline(transaction=True)
        pipe.delete(WORKER_KEY.format(state.worker_id))
        pipe.zrem(WORKER_INDEX, state.worker_id)
        pipe.execute()
    except redis.exceptions.RedisError:
        log.warning("health.withdraw_failed")


def raise_action(app: Flask, action: str) -> int:
    """Raise an action's generation; every worker applies it on its next heartbeat. Returns it."""
    if action not in ACTIONS:
        raise KeyError(action)
    heartbeat_state(app)  # this worker knows the generations before one rises: it applies the new one
    return int(redis_conn.redis_client(app).hincrby(ACTIONS_KEY, action, 1))


def apply_now(app: Flask) -> list[str]:
    """Apply raised actions in this worker at once, not at its next beat, and publish its figures."""
    applied = apply_pending_actions(app)
    publish(app)
    return applied


def live_workers(client, interval: float) -> list[dict]:
    """The figures of every worker that beat within the TTL; stale index entries are pruned."""
    now = time.time()
    horizon = now - interval * TTL_FACTOR
    client.zremrangebyscore(WORKER_INDEX, "-inf", horizon)
    ids = [m.decode() for m in client.zrangebyscore(WORKER_INDEX, horizon, "+inf")]
    if not ids:
        return []
    pipe = client.pipeline(transaction=False)
    for worker_id in ids:
        pipe.hget(WORKER_KEY.format(worker_id), "figures")
    workers = [json.loads(raw) for raw in pipe.execute() if raw]
    return sorted(workers, key=lambda w: (w["instance"], w["pid"]))
