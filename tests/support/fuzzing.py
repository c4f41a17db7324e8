"""The hypothesis settings the fuzz tests share: the same examples every run, no deadline, no example database."""

from __future__ import annotations

from hypothesis import HealthCheck, settings


def fuzz_settings(max_examples: int, *also_suppress: HealthCheck) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, *also_suppress],
    )
