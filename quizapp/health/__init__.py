"""Liveness, readiness and (later) cluster-wide health."""
