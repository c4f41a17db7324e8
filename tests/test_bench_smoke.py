"""The benchmark keeps working: a 20 s smoke of `make bench` through nginx with exact integrity."""

import os
import subprocess
import sys

import pytest

from devstack.processes import ROOT


@pytest.mark.slow
@pytest.mark.integration
def test_bench_smoke_runs_clean():
    env = {**os.environ, "DATABASE_URL": os.environ["DATABASE_URL"], "REDIS_URL": os.environ["REDIS_URL"]}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "bench smoke: ok" in proc.stdout
