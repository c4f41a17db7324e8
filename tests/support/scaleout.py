"""The scale-out tools of scripts/ (PgBouncer, Redis HA, hosts), imported for the tests."""

from __future__ import annotations

import importlib.util

from tests.support.servers import ROOT


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pgbouncer = _load("pgbouncer")
PgBouncer = pgbouncer.PgBouncer
