"""Edge protection: rate limits, trusted proxy, CSRF, security headers, request ids.

Contract for other packages:
- init_app(app): called by create_app after blueprints are registered (limits are applied by
  endpoint name: quiz.submit, quiz.email, admin_auth.login...).
- limiter_status() -> dict: {"storage": "redis" | "memory-fallback", ...} for health.
"""

from __future__ import annotations

from ..extensions import limiter


def init_app(app) -> None:
    """Not wired yet beyond the limiter object; the security work fills this in."""
    app.config.setdefault("RATELIMIT_STORAGE_URI", app.config["REDIS_URL"])
    app.config["RATELIMIT_ENABLED"] = False
    limiter.init_app(app)


def limiter_status() -> dict:
    return {"storage": "redis", "fallback": False}
