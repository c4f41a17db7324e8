"""bench/route_cpu.conf.py: the real gunicorn settings plus per-route CPU, summed by bench/route_cpu.py."""

import importlib.util
import json

import requests

from devstack.processes import ROOT
from devstack.servers import Gunicorn


def test_route_cpu_counts_every_request_by_route(tmp_path, capsys):
    env = {"QUIZAPP_ENV": "test", "BENCH_ROUTE_CPU": "1", "BENCH_ROUTE_CPU_DIR": str(tmp_path)}
    with Gunicorn("wsgi:app", env=env) as app:
        http = requests.Session()
        for _ in range(150):
            assert http.get(app.url + "/healthz", timeout=5).status_code == 200
        for _ in range(50):
            assert http.get(app.url + "/nope", timeout=5).status_code == 404
    (written,) = tmp_path.glob("route-cpu-*.json")
    routes = json.loads(written.read_text())["routes"]
    # every request, to the last (written on exit); /healthz also had the start-up probe(s)
    assert routes["GET - 404"][0] == 50 and routes["GET /healthz 200"][0] >= 150
    assert all(cpu > 0 for _, cpu in routes.values())
    spec = importlib.util.spec_from_file_location("route_cpu", ROOT / "bench" / "route_cpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
    assert "| 50 |" in capsys.readouterr().out
