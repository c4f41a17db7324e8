"""The infrastructure paths (probes, metrics, static files): one list for sessions, limits and admission."""

from __future__ import annotations

# Asked for by machines or by the browser for a page already served: never a visitor's step.
INFRASTRUCTURE_PATHS = ("/healthz", "/readyz", "/metrics")
INFRASTRUCTURE_PREFIXES = ("/api/health/", "/static/")


def is_infrastructure(path: str) -> bool:
    """No session read, no rate limit, and first in line at admission."""
    return path in INFRASTRUCTURE_PATHS or path.startswith(INFRASTRUCTURE_PREFIXES)
