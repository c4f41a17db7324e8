"""Fewer Redis replicas online than REDIS_WAIT_REPLICAS wants, or one not acknowledging: health
warnings and gauges."""

import os
import signal

import pytest

from devstack.processes import free_port_block, wait_for
from devstack.redis_ha import RedisHA
from quizapp.health import aggregate, alerts, checks, heartbeat
from tests.test_health_cluster import OK, _worker
from tests.test_metrics import _samples


def _replica_alerts(wanted: int, connected: int) -> list[tuple[str, str]]:
    ctx = alerts.HealthContext(
        workers=[_worker()],
        checks=OK,
        config={"REDIS_WAIT_REPLICAS": wanted},
        cluster={"redis_replication": {"role": "master", "connected": connected}},
    )
    return [(a.name, a.severity) for a in alerts.evaluate(ctx, checks=[checks.redis_replicas])]


def _lag_alerts(wanted: int, lag_seconds: int) -> list[tuple[str, str]]:
    replication = {"role": "master", "connected": 1, "lag_bytes": 512, "lag_seconds": lag_seconds}
    ctx = alerts.HealthContext(
        workers=[_worker()],
        checks=OK,
        config={"REDIS_WAIT_REPLICAS": wanted},
        cluster={"redis_replication": replication},
    )
    return [(a.name, a.severity) for a in alerts.evaluate(ctx, checks=[checks.redis_replica_lagging])]


def test_the_lag_check_warns_from_five_missed_acks_and_only_when_a_write_waits_for_it():
    assert _lag_alerts(wanted=1, lag_seconds=5) == [("redis_replica_lagging", "warning")]
    assert _lag_alerts(wanted=1, lag_seconds=4) == []  # replicas ack every second: a hiccup
    assert _lag_alerts(wanted=0, lag_seconds=60) == []  # nobody waits on it


def test_the_check_warns_only_when_fewer_replicas_than_wanted():
    missing = [("redis_replica_missing", "warning")]
    assert _replica_alerts(wanted=1, connected=0) == missing
    assert _replica_alerts(wanted=2, connected=1) == missing
    assert _replica_alerts(wanted=1, connected=1) == []
    assert _replica_alerts(wanted=1, connected=2) == []
    assert _replica_alerts(wanted=0, connected=0) == []


def _report_and_metrics(app) -> tuple[dict, dict]:
    with app.app_context():
        heartbeat.publish(app)
        report = aggregate.detailed_health(fresh=True)
    return report, _samples(app.test_client().get("/metrics").get_data(as_text=True))


def _replica_findings(report: dict) -> list[dict]:
    return [a for a in report["alert_details"] if a["name"] == "redis_replica_missing"]


def test_standalone_redis_warns_when_a_replica_is_wanted(make_app):
    # The suite's Redis is standalone: no replica ever connects.
    report, samples = _report_and_metrics(make_app(REDIS_WAIT_REPLICAS="1"))
    assert report["cluster"]["redis_replication"] == {"role": "master", "connected": 0}
    (finding,) = _replica_findings(report)
    assert finding["severity"] == "warning" and finding["penalty"] == 20
    assert finding["message"] == "Redis (master) has 0 replica(s) online, REDIS_WAIT_REPLICAS wants 1"
    assert (report["score"], report["status"]) == (80, "degraded"), report["findings"]
    assert samples[("quizapp_redis_connected_replicas", ())] == 0
    assert samples[("quizapp_redis_replicas_wanted", ())] == 1


def test_standalone_redis_is_healthy_when_no_replica_is_wanted(make_app):
    report, samples = _report_and_metrics(make_app(REDIS_WAIT_REPLICAS="0"))
    assert _replica_findings(report) == []
    assert (report["score"], report["status"]) == (100, "healthy"), report["findings"]
    assert samples[("quizapp_redis_connected_replicas", ())] == 0
    assert samples[("quizapp_redis_replicas_wanted", ())] == 0


PROBE_BYTES = 100_000  # written while the replica is frozen: far more than a second of the app's writes


def _caught_up(app) -> tuple[dict, dict] | None:
    """A report whose replica acknowledged within the last second. It is still behind by what was
    written since (the test's own heartbeat and the report cache: a few KB), never by the probe."""
    report, samples = _report_and_metrics(app)
    replication = report["cluster"]["redis_replication"]
    return (report, samples) if replication.get("lag_seconds", 99) <= 1 else None


@pytest.mark.integration
def test_a_real_replica_counts_its_lag_shows_and_its_loss_warns(make_app, tmp_path):
    ha = RedisHA(tmp_path / "redis-ha", free_port_block(5), service=f"qr{os.getpid()}")
    try:
        ha.start()
        app = make_app(
            REDIS_SENTINELS=ha.sentinels,
            REDIS_SENTINEL_SERVICE=ha.service,
            REDIS_URL=f"redis://127.0.0.1:{ha.base_port}/0",
            REDIS_WAIT_REPLICAS="1",
        )
        report, samples = wait_for(
            lambda: _caught_up(app),
            timeout=30,
            what="the replica to acknowledge the whole stream",
            interval=0.5,
        )
        replication = report["cluster"]["redis_replication"]
        assert (replication["role"], replication["connected"]) == ("master", 1)
        assert replication["lag_bytes"] < PROBE_BYTES // 2
        assert _replica_findings(report) == [] and report["status"] == "healthy", report["findings"]
        assert samples[("quizapp_redis_connected_replicas", ())] == 1
        assert samples[("quizapp_redis_replica_lag_bytes", ())] < PROBE_BYTES // 2
        assert samples[("quizapp_redis_replica_lag_seconds", ())] <= 1

        # A frozen replica stays "online" until repl-timeout (60 s) but stops acknowledging: the
        # primary's stream runs ahead of it and the seconds since its last ack grow.
        replica = ha.procs[f"redis-{ha.base_port + 1}"]
        replica.send_signal(signal.SIGSTOP)
        try:
            primary = ha.client(ha.base_port)
            primary.set("lag-probe", "x" * PROBE_BYTES)

            def lagging():
                report = _report_and_metrics(app)[0]
                return [a for a in report["alert_details"] if a["name"] == "redis_replica_lagging"]

            (finding,) = wait_for(lagging, timeout=30, what="the replica-lagging warning", interval=0.5)
            report, samples = _report_and_metrics(app)  # frozen: the lag only grows
            replication = report["cluster"]["redis_replication"]
            assert replication["connected"] == 1 and replication["lag_seconds"] >= 5
            assert replication["lag_bytes"] >= PROBE_BYTES  # the probe's value, at least
            assert finding["severity"] == "warning" and finding["penalty"] == 10
            assert samples[("quizapp_redis_replica_lag_seconds", ())] >= 5
            assert samples[("quizapp_redis_replica_lag_bytes", ())] >= PROBE_BYTES
        finally:
            replica.send_signal(signal.SIGCONT)
        wait_for(
            lambda: _caught_up(app), timeout=30, what="the replica to catch up after it resumed", interval=0.5
        )
        ha.kill(ha.base_port + 1)
        # The primary drops a killed replica's socket at once; a busy machine may still take a while.
        wait_for(
            lambda: _replica_findings(_report_and_metrics(app)[0]),
            timeout=60,
            what="the replica-missing warning",
            interval=0.5,
        )
        report, samples = _report_and_metrics(app)
        assert report["cluster"]["redis_replication"] == {"role": "master", "connected": 0}
        assert samples[("quizapp_redis_connected_replicas", ())] == 0
        assert ("quizapp_redis_replica_lag_seconds", ()) not in samples  # no replica, no lag
        assert samples[("quizapp_redis_replicas_wanted", ())] == 1
    finally:
        ha.stop()
