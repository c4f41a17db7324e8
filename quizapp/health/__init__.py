"""Liveness, readiness, per-worker heartbeats and the cluster-wide health report and metrics."""
