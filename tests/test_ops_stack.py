"""`make stack`'s script brings up nginx -> 2 gunicorn instances; walk the app through nginx."""

import gzip
import os
import re
import subprocess
import sys
import time

import pytest
import requests

from devstack.processes import ROOT, free_port, process_exists


def _walk(app):
    """(method, path, expected status) for every route that exists on this build."""
    steps = [("GET", "/healthz", 200), ("GET", "/readyz", 200)]
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    steps.append(("GET", "/", 200 if "quiz.landing" in endpoints else 404))
    return steps


def _wait_for_log(stack, needle: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        logs = "".join((stack["state"] / f"gunicorn-{p}.log").read_text() for p in stack["ports"])
        if needle in logs or time.monotonic() > deadline:
            assert needle in logs
            return logs
        time.sleep(0.1)


@pytest.fixture
def stack(tmp_path):
    ports = [free_port(), free_port()]
    nginx_port, door_port = free_port(), free_port()
    env = {**os.environ, "RATELIMIT_ENABLED": "false", "HEARTBEAT_SECONDS": "0.5"}
    options = ["--state-dir", str(tmp_path / "stack"), "--ports", ",".join(map(str, ports))]
    options += ["--port", str(nginx_port), "--fake-openai-port", str(free_port())]
    options += ["--door-port", str(door_port)]

    def run_stack(action: str) -> subprocess.CompletedProcess:
        command = [sys.executable, str(ROOT / "scripts" / "stack.py"), action, *options]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)

    started = run_stack("start")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield {
            "url": f"http://127.0.0.1:{nginx_port}",
            "ports": ports,
            "door_port": door_port,
            "state": tmp_path / "stack",
            "stdout": started.stdout,
        }
    finally:
        pids = [int(p.read_text()) for p in (tmp_path / "stack").glob("*.pid")]
        stopped = run_stack("stop")
        assert stopped.returncode == 0, stopped.stderr
        assert not [pid for pid in pids if process_exists(pid)]


@pytest.mark.integration
def test_stack_serves_the_app_static_files_and_metrics_through_nginx(stack, app):
    mailer = int((stack["state"] / "mailer.pid").read_text())
    assert process_exists(mailer)  # make stack starts the mailer beside the instances
    url = stack["url"]
    assert f"{url}/" in stack["stdout"]
    session = requests.Session()
    for method, path, expected in _walk(app):
        response = session.request(method, url + path, timeout=10)
        assert response.status_code == expected, (method, path, response.status_code)

    css = session.get(url + "/static/css/site.css", headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert css.status_code == 200
    assert "max-age=3600" in css.headers["Cache-Control"] and "public" in css.headers["Cache-Control"]
    assert "Expires" in css.headers and css.headers["X-Content-Type-Options"] == "nosniff"
    on_disk = (ROOT / "quizapp" / "static" / "css" / "site.css").read_bytes()
    assert css.content == on_disk
    if len(on_disk) >= 1024:  # gzip_min_length
        assert css.headers["Content-Encoding"] == "gzip"
        raw = session.get(
            url + "/static/css/site.css",
            headers={"Accept-Encoding": "gzip"},
            timeout=10,
            stream=True,
        ).raw.read()
        assert gzip.decompress(raw) == on_disk

    # The request id reaches gunicorn's access log; a client-given well-formed id is kept.
    session.get(url + "/healthz", headers={"X-Request-ID": "walk-req-0001"}, timeout=10)
    logs = _wait_for_log(stack, "rid=walk-req-0001")  # written just after the response
    assert re.search(r"rid=[0-9a-f]{32} ", logs)
    # Both instances take traffic (least_conn) and heartbeat into the cluster view.
    for _ in range(20):
        session.get(url + "/readyz", timeout=10)
    metrics = session.get(url + "/metrics", timeout=10)
    assert metrics.status_code == 200 and "quizapp_http_requests_total" in metrics.text
    health = session.get(url + "/api/health/detailed", timeout=10).json()
    door = f"stack-door-{stack['door_port']}"  # the door instance heartbeats like the others
    assert sorted(health["instances"]) == sorted([*(f"stack-{p}" for p in stack["ports"]), door])
