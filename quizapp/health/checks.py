"""The built-in health checks; thresholds are documented in README (Operations: health alerts)."""

from __future__ import annotations

from dataclasses import dataclass

from .. import redis_conn
from ..ai.service import free_pending_limit
from .alerts import CRITICAL, INFO, WARNING, Alert, HealthContext, register_check

POOL_SATURATED_AT = 0.9  # in use / max, or anyone waiting
ERRORS_WARN, ERRORS_CRIT = 0.01, 0.05  # 5xx share of the responses since the last reset
ERRORS_MIN_REQUESTS = 20
AI_QUEUE_WARN = 0.8  # of the free jobs' queue limit (quizapp.ai.service.free_pending_limit)
RSS_HIGH_BYTES = 768 * 1024 * 1024
REDIS_MEMORY_WARN, REDIS_MEMORY_CRIT = 0.90, 0.97  # used_memory / maxmemory


@register_check
def no_workers(ctx: HealthContext):
    if not ctx.workers:
        return Alert(
            "no_workers", CRITICAL, "no worker heartbeats", "no live workers: start the instances", 100
        )
    return None


@register_check
def dependencies(ctx: HealthContext):
    return [
        Alert(f"{name}_down", CRITICAL, f"{name} check failed: {result}", f"{name} down: restore {name}", 60)
        for name, result in sorted(ctx.checks.items())
        if result != "ok"
    ]


@register_check
def pool_saturation(ctx: HealthContext):
    workers = ctx.workers
    saturated = [
        w
        for w in workers
        if w.get("pool")
        and (w["pool"]["waiting"] > 0 or w["pool"]["in_use"] >= POOL_SATURATED_AT * w["pool"]["max"])
    ]
    if not saturated:
        return None
    most = len(saturated) * 2 >= len(workers)
    return Alert(
        "db_pool_saturated",
        WARNING if most else INFO,
        f"pool saturated on {len(saturated)} of {len(workers)} workers",
        "pool saturated: raise DB_POOL_MAX or add PgBouncer",
        30 if most else 15,
    )


@register_check
def server_errors(ctx: HealthContext):
    requests = sum(w["http"]["errors"]["requests"] for w in ctx.workers)
    errors = sum(w["http"]["errors"]["5xx"] for w in ctx.workers)
    if requests < ERRORS_MIN_REQUESTS or errors == 0 or errors / requests < ERRORS_WARN:
        return None
    ratio = errors / requests
    return Alert(
        "http_5xx",
        CRITICAL if ratio >= ERRORS_CRIT else WARNING,
        f"{errors} of {requests} responses were 5xx ({ratio:.1%})",
        "5xx errors: read the error log by request id; reset the counters once fixed",
        40 if ratio >= ERRORS_CRIT else 15,
    )


@register_check
def ai_breaker(ctx: HealthContext):
    """The breaker lives in Redis: open on every worker means no AI analysis for anyone."""
    workers = ctx.workers
    opened = [w for w in workers if w.get("breaker") == "OPEN"]
    if not opened:
        return None
    if len(opened) == len(workers):
        return Alert(
            "ai_breaker_open",
            CRITICAL,
            f"AI circuit breaker open on every worker ({len(opened)}): no AI analysis is being made",
            "AI breaker open: the AI provider is failing (check its status and OPENAI_API_KEY); results "
            "get the algorithmic analysis; force-close the breakers once it answers again",
            40,
        )
    return Alert(
        "ai_breaker_open_partly",
        INFO,
        f"AI circuit breaker open on {len(opened)} of {len(workers)} workers",
        "AI breaker opening or closing: watch whether it reaches every worker",
        10,
    )


@register_check
def ai_queue(ctx: HealthContext):
    queue_max = free_pending_limit(ctx.config)  # beyond it, free jobs get the fallback at once
    queue = max(((w.get("ai") or {}).get("queue_length") or 0 for w in ctx.workers), default=0)
    if queue < AI_QUEUE_WARN * queue_max:
        return None
    return Alert(
        "ai_queue_full",
        WARNING,
        f"AI queue at {queue} of {queue_max}",
        "AI queue near full (free results beyond it get the algorithmic analysis at once):"
        " raise AI_RPM if the provider allows it, or reset the queue",
        20,
    )


@register_check
def limiter_fallback(ctx: HealthContext):
    fallback = [w for w in ctx.workers if (w.get("limiter") or {}).get("fallback")]
    if not fallback:
        return None
    return Alert(
        "limiter_fallback",
        WARNING,
        f"rate limiter on its in-memory fallback on {len(fallback)} of {len(ctx.workers)} workers",
        "limiter fallback: Redis is unreachable for the limiter, so limits hold per worker only; "
        "restore Redis (the limiter returns to it by itself)",
        20,
    )


@register_check
def worker_memory(ctx: HealthContext):
    heavy = [w for w in ctx.workers if w.get("rss_bytes", 0) >= RSS_HIGH_BYTES]
    if not heavy:
        return None
    return Alert(
        "worker_memory_high",
        INFO,
        f"{len(heavy)} workers above {RSS_HIGH_BYTES // 2**20} MiB resident",
        "memory high: set GUNICORN_MAX_REQUESTS (workers then recycle; off by default) or find the leak",
        10,
    )


def read_redis_memory(client) -> dict:
    info = client.info("memory")
    return {
        "used": int(info.get("used_memory", 0)),
        "max": int(info.get("maxmemory", 0)),
        "policy": str(info.get("maxmemory_policy", "")),
    }


@register_check
def redis_memory(ctx: HealthContext):
    memory = ctx.probe("redis_memory", lambda: read_redis_memory(redis_conn.redis_client(ctx.app)))
    if not memory:
        return None
    if not memory["max"]:
        return Alert(
            "redis_no_maxmemory",
            INFO,
            "Redis runs without maxmemory",
            "Redis unbounded: set maxmemory and maxmemory-policy volatile-lru (docs/deploy.md)",
            0,
        )
    share = memory["used"] / memory["max"]
    if share < REDIS_MEMORY_WARN:
        return None
    return Alert(
        "redis_memory_high",
        CRITICAL if share >= REDIS_MEMORY_CRIT else WARNING,
        f"Redis memory at {share:.0%} of maxmemory "
        f"({memory['used'] // 2**20} of {memory['max'] // 2**20} MiB)",
        "Redis near its cap: sessions and limits are being evicted (volatile-lru); raise maxmemory "
        "or find what grows (redis-cli --bigkeys)",
        40 if share >= REDIS_MEMORY_CRIT else 20,
    )


def read_redis_replication(client) -> dict:
    """The primary's role and its replicas in state online (the ones a WAIT can count), per INFO;
    with replicas online, how far the furthest behind lags: bytes of the replication stream it has
    not acknowledged, and seconds since it last acknowledged any (replicas ack every second)."""
    info = client.info("replication")
    online = [
        value
        for key, value in info.items()
        if key.startswith("slave") and isinstance(value, dict) and value.get("state") == "online"
    ]
    report = {"role": str(info.get("role", "")), "connected": len(online)}
    if online:
        head = int(info.get("master_repl_offset", 0))
        report["lag_bytes"] = max(max(head - int(r.get("offset", 0)), 0) for r in online)
        report["lag_seconds"] = max(int(r.get("lag", 0)) for r in online)
    return report


def _replication(ctx: HealthContext) -> dict | None:
    """INFO replication on the primary, read once per report for every check that needs it."""
    return ctx.probe("redis_replication", lambda: read_redis_replication(redis_conn.redis_client(ctx.app)))


@register_check
def redis_replicas(ctx: HealthContext):
    """With REDIS_WAIT_REPLICAS, a missing replica leaves session writes unreplicated, AI calls paused."""
    replication = _replication(ctx)
    wanted, timeout_ms = redis_conn.replicas_wanted(ctx.config)
    if not wanted or not replication or replication["connected"] >= wanted:
        return None
    skip_s = ctx.config.get("REDIS_WAIT_SKIP_SECONDS", 5)
    waits = (
        f"one in {skip_s} s per worker waits {timeout_ms} ms for it"
        if skip_s
        else f"each waits {timeout_ms} ms"
    )
    return Alert(
        "redis_replica_missing",
        WARNING,
        f"Redis ({replication['role'] or 'unknown role'}) has {replication['connected']} replica(s) online, "
        f"REDIS_WAIT_REPLICAS wants {wanted}",
        f"replica missing: session writes stay on the primary alone ({waits}), AI calls pause; restore the "
        "replica (docs/scale-out.md) or lower REDIS_WAIT_REPLICAS",
        20,
    )


REPLICA_LAG_WARN_SECONDS = 5  # replicas acknowledge every second: five missed acks is no hiccup


@register_check
def redis_replica_lagging(ctx: HealthContext):
    """A replica online but not acknowledging: with REDIS_WAIT_REPLICAS, durable writes wait on it."""
    replication = _replication(ctx)
    wanted, timeout_ms = redis_conn.replicas_wanted(ctx.config)
    lag = (replication or {}).get("lag_seconds", 0)
    if not wanted or lag < REPLICA_LAG_WARN_SECONDS:
        return None
    return Alert(
        "redis_replica_lagging",
        WARNING,
        f"a Redis replica has not acknowledged for {lag} s ({replication['lag_bytes']} bytes behind)",
        f"replica lagging: durable writes may wait {timeout_ms} ms each; check the replica's host, "
        "its network and its log (redis-cli INFO replication on the primary)",
        10,
    )


MAIL_BACKLOG_PENALTY, MAIL_DEAD_PENALTY = 20, 10


@dataclass(frozen=True)
class FigureAlert:
    """A warning raised while a business figure is above zero; the message names the count."""

    figure: str
    name: str
    message: str  # with {count}
    recommendation: str
    penalty: int


MAIL_ALERTS = (
    FigureAlert(
        "backlog",
        "mail_backlog",
        "mail backlog: {count} mails due for over 5 minutes",
        "mail backlog: is quizapp-mailer.service running? check SMTP_URL and its log",
        MAIL_BACKLOG_PENALTY,
    ),
    FigureAlert(
        "dead",
        "mail_dead_letters",
        "{count} mails are dead letters: SMTP failed on every attempt",
        "dead letters: fix the cause in the mailer log, then requeue or cancel them",
        MAIL_DEAD_PENALTY,
    ),
)
PAYMENT_ALERTS = (
    FigureAlert(
        "mismatches_24h",
        "payment_mismatch",
        "{count} payment webhooks did not match their checkout (24 h)",
        "payment mismatch: compare the audit log with the Stripe dashboard",
        20,
    ),
    FigureAlert(
        "refunds_pending",
        "refunds_pending",
        "{count} second payments wait for a refund",
        "refunds pending: refund them from the admin payments page",
        10,
    ),
)


def figure_alerts(figures: dict, rules) -> list[Alert]:
    """The alerts of `rules` whose figure is above zero (also the admin page's business alerts)."""
    return [
        Alert(
            name=rule.name,
            severity=WARNING,
            message=rule.message.format(count=figures[rule.figure]),
            recommendation=rule.recommendation,
            penalty=rule.penalty,
        )
        for rule in rules
        if figures.get(rule.figure)
    ]


@register_check
def mail_outbox(ctx: HealthContext):
    """Mail due for over 5 minutes (mailer stopped or SMTP down) and dead letters (money-mail)."""
    from ..mail import service as mail_service  # the mail feature's own figures

    figures = ctx.probe("mail", mail_service.outbox_figures)
    return figure_alerts(figures, MAIL_ALERTS) if figures else None


@register_check
def payment_problems(ctx: HealthContext):
    """Webhooks that did not match their checkout (24 h) and payments waiting for a refund."""
    from ..payments import service as payments_service

    figures = ctx.probe("payments", payments_service.payment_figures)
    return figure_alerts(figures, PAYMENT_ALERTS) if figures else None
