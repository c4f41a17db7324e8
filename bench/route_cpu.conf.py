"""gunicorn.conf.py plus per-route CPU accounting, for `BENCH_ROUTE_CPU=1 make bench` (quick runs).

Each worker counts the CPU time of every request by route, status and admission outcome, exactly per
greenlet (a greenlet.settrace hook charges CPU to whichever greenlet ran, so requests interleaved on
one event loop are told apart), and writes var/bench/route-cpu-<pid>.json every 200 requests and on exit.
`python bench/route_cpu.py` sums the files into a table. Never used by make run, stack or deploy.
"""

import collections
import json
import os
import runpy
import time
from pathlib import Path

_base = runpy.run_path(str(Path(__file__).resolve().parent.parent / "gunicorn.conf.py"))
globals().update({k: v for k, v in _base.items() if not k.startswith("__")})

_OUT = Path(os.environ.get("BENCH_ROUTE_CPU_DIR") or Path(__file__).resolve().parent.parent / "var" / "bench")
_routes = collections.defaultdict(lambda: [0, 0.0])
_cpu_by_greenlet: dict = {}
_last = [0.0]
_state = {"t0": None, "n": 0}


def _trace(event, args):
    if event in ("switch", "throw"):
        origin = args[0]
        now = time.process_time()
        key = "hub" if type(origin).__name__ == "Hub" else origin
        _cpu_by_greenlet[key] = _cpu_by_greenlet.get(key, 0.0) + now - _last[0]
        _last[0] = now


def _spent(greenlet) -> float:
    return _cpu_by_greenlet.get(greenlet, 0.0) + time.process_time() - _last[0]


def pre_request(worker, req):
    import greenlet

    if _state["t0"] is None:
        _state["t0"] = _last[0] = time.process_time()
        greenlet.settrace(_trace)
    req.cpu_greenlet = greenlet.getcurrent()
    req.cpu_start = _spent(req.cpu_greenlet)


def post_request(worker, req, environ, resp):
    headers = {k.lower(): v for k, v in (resp.headers or [])}
    status = getattr(resp, "status_code", None) or str(resp.status).split()[0]
    route, admission = headers.get("x-quizapp-route", "-"), headers.get("x-admission", "")
    key = f"{req.method} {route} {status} {admission}".strip()
    entry = _routes[key]
    entry[0] += 1
    entry[1] += _spent(req.cpu_greenlet) - req.cpu_start
    _state["n"] += 1
    if _state["n"] % 200 == 0:
        _write()


def _write():
    if _state["t0"] is None:
        return
    _OUT.mkdir(parents=True, exist_ok=True)
    figures = {
        "total_cpu_s": time.process_time() - _state["t0"],
        "hub_cpu_s": _cpu_by_greenlet.get("hub", 0.0),
        "routes": _routes,
    }
    (_OUT / f"route-cpu-{os.getpid()}.json").write_text(json.dumps(figures))


def worker_exit(server, worker):
    _base["worker_exit"](server, worker)
    _write()  # the last requests too
