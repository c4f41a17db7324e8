"""The Prometheus alert rules pass `promtool test rules`; rules and dashboard use exported names only."""

import json
import re
import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack.processes import ROOT
from quizapp.ai.runtime import stop_runtime
from quizapp.health import heartbeat

RULES = ROOT / "monitoring" / "prometheus"
DASHBOARD = ROOT / "monitoring" / "grafana" / "quizapp-dashboard.json"
# Exported only while a Redis replica is online: tests/test_redis_replica_health.py sees them.
REPLICA_ONLY = {"quizapp_redis_replica_lag_bytes", "quizapp_redis_replica_lag_seconds"}
AI = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:  # scripts/sysdeps.sh installs it (package prometheus) when it can
        subprocess.run(["bash", str(ROOT / "scripts" / "sysdeps.sh")], check=False, timeout=600)  # noqa: S603,S607
        found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is missing and scripts/sysdeps.sh could not install it (needs root and apt)")
    return found


def _run_promtool(promtool: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603
        [promtool, *args], cwd=RULES, capture_output=True, text=True, timeout=timeout
    )


def test_alert_rules_pass_promtool_unit_tests():
    promtool = _promtool()
    check = _run_promtool(promtool, "check", "rules", "quizapp.rules.yml", timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    result = _run_promtool(promtool, "test", "rules", "quizapp.rules.test.yml", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rules_and_dashboard_name_only_exported_metrics(make_app):
    app = make_app(**AI)
    try:
        with app.app_context():
            heartbeat.publish(app)
        text = app.test_client().get("/metrics").get_data(as_text=True)
    finally:
        stop_runtime(app)
    families = list(text_string_to_metric_families(text))
    exported = {s.name for family in families for s in family.samples}
    exported |= {f"{f.name}_total" for f in families if f.type == "counter"}  # declared, no sample yet
    exported |= REPLICA_ONLY  # the suite's Redis has no replica
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = set(re.findall(r"\bquizapp_[a-z_]+", "\n".join(exprs) + (RULES / "quizapp.rules.yml").read_text()))
    assert used and used <= exported, sorted(used - exported)
