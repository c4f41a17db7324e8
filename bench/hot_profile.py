"""CPU per request on the hot routes, in process: raw WSGI calls against the real Postgres and Redis.

    set -a; . var/services.env; set +a
    python bench/hot_profile.py [-n 1000] [--rounds 5] [--routes question,answer] [--profile] [--code DIR]
                                [--psycogreen]

One quiz is started, answered and submitted through the app itself; then each route runs N times
(after a warm-up), timed by process CPU, and again under cProfile with --profile (top frames by
self and by inclusive time). No gunicorn, no sockets to the client: what is left is the app's own
cost per request, deterministic enough to compare two versions of the code in the same minutes
(--code /work/main imports that checkout's quizapp instead of this one's).
Limits stay on, as high as wrk's one person on one address needs (as bench/efficiency.py does).
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/profile.py would shadow the standard library's profile module, which cProfile imports: the
# checkout's root instead, at the end (--code puts the quizapp to measure in front of it).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.append(str(Path(__file__).resolve().parent.parent))

from gevent import monkey

monkey.patch_all()

import argparse
import cProfile
import io
import os
import pstats
import re
import time
from http.cookies import SimpleCookie
from urllib.parse import urlencode

from bench.raised_limits import RAISED_LIMITS

ROOT = Path(__file__).resolve().parent.parent
ROUTES = ("healthz", "landing", "question", "answer", "poll", "result", "start", "submit")
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def load_services_env(root: Path) -> None:
    """var/services.env (the local PG/Redis URLs) unless the caller exported them already."""
    path = root / "var" / "services.env"
    if "DATABASE_URL" in os.environ or not path.exists():
        return
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            os.environ.setdefault(key, value)


class WsgiClient:
    """Calls the WSGI app directly with prepared environs; keeps the cookies it is given."""

    def __init__(self, app, address: str = "127.0.0.1"):
        self.app = app
        self.address = address
        self.cookies: dict[str, str] = {}

    def environ(self, method: str, path: str, form: dict | None = None) -> dict:
        body = urlencode(form).encode() if form is not None else b""
        env = {
            "REQUEST_METHOD": method,
            "SCRIPT_NAME": "",
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": self.address,
            "REMOTE_PORT": "40000",
            "HTTP_HOST": "127.0.0.1:8000",
            "HTTP_USER_AGENT": "hot-profile",
            "HTTP_ACCEPT": "text/html,application/xhtml+xml,*/*;q=0.8",
            "HTTP_ACCEPT_ENCODING": "gzip, deflate",
            "HTTP_CONNECTION": "keep-alive",
            "wsgi.url_scheme": "http",
            "wsgi.version": (1, 0),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "_body": body,
        }
        if self.cookies:
            env["HTTP_COOKIE"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if form is not None:
            env["CONTENT_TYPE"] = "application/x-www-form-urlencoded"
            env["CONTENT_LENGTH"] = str(len(body))
        return env

    def send(self, prepared: dict, keep_cookies: bool = False) -> tuple[int, dict, bytes]:
        env = dict(prepared)
        env["wsgi.input"] = io.BytesIO(env.pop("_body"))
        captured = {}

        def start_response(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers

        chunks = self.app(env, start_response)
        try:
            body = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
        if keep_cookies:
            for name, value in captured["headers"]:
                if name.lower() == "set-cookie":
                    for morsel in SimpleCookie(value).values():
                        self.cookies[morsel.key] = morsel.value
        return int(captured["status"].split()[0]), dict(captured["headers"]), body

    def request(self, method: str, path: str, form: dict | None = None) -> tuple[int, dict, bytes]:
        return self.send(self.environ(method, path, form), keep_cookies=True)


def build_app():
    from quizapp import create_app
    from quizapp.config import Config

    env = {
        **os.environ,
        "QUIZAPP_ENV": "development",
        **RAISED_LIMITS,
        # AI on, against a port nobody listens on: the analysis ends as the fallback text at once,
        # and the poll reads a finished job from Redis, as most polls do.
        "OPENAI_API_KEY": "sk-hot-profile",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "AI_RETRIES": "1",
        "AI_FALLBACK_CACHE_SECONDS": "86400",  # the poll keeps finding the finished job
    }
    return create_app(Config.from_env(env))


def expect(status: int, wanted: int, what: str, body: bytes = b"") -> None:
    if status != wanted:
        raise SystemExit(f"{what}: HTTP {status}, wanted {wanted}\n{body[:600].decode(errors='replace')}")


def prepare(app) -> dict[str, tuple[WsgiClient, object]]:
    """One finished quiz (for result and poll) and one in progress: the prepared request per route."""
    client = WsgiClient(app)
    status, _, body = client.request("GET", "/")
    expect(status, 200, "landing", body)
    token = CSRF_RE.search(body.decode()).group(1)
    status, headers, _ = client.request("POST", "/start", {"csrf_token": token})
    expect(status, 303, "start")
    path = "/" + headers["Location"].split("://", 1)[-1].split("/", 1)[1]
    first = path
    while path.startswith("/q/"):
        status, headers, body = client.request("GET", path)
        expect(status, 200, f"GET {path}", body)
        status, headers, body = client.request("POST", path, {"csrf_token": token, "choice": "1"})
        expect(status, 303, f"POST {path}", body)
        path = "/" + headers["Location"].split("://", 1)[-1].split("/", 1)[1]
    status, headers, body = client.request("POST", "/submit", {"csrf_token": token})
    expect(status, 303, "submit", body)
    result = "/" + headers["Location"].split("://", 1)[-1].split("/", 1)[1]
    public_id = result.rsplit("/", 1)[1]
    status, _, body = client.request("GET", result)
    expect(status, 200, "result", body)
    status, _, body = client.request("GET", f"/api/analysis/{public_id}")
    expect(status, 200, "poll", body)
    # After the submit, the answer POSTs below start a new attempt (a changed answer drops the result):
    # the result and poll requests keep their own cookies from here.
    done = WsgiClient(app)
    done.cookies = dict(client.cookies)
    answering = WsgiClient(app)
    answering.cookies = dict(client.cookies)
    answer_forms = [
        answering.environ("POST", first, {"csrf_token": token, "choice": choice}) for choice in ("1", "2")
    ]
    return {
        "healthz": (done, [done.environ("GET", "/healthz")]),
        "landing": (done, [done.environ("GET", "/")]),
        "question": (answering, [answering.environ("GET", first)]),
        "answer": (answering, answer_forms),  # alternating choices: the session changes each time
        "poll": (done, [done.environ("GET", f"/api/analysis/{public_id}")]),
        "result": (done, [done.environ("GET", result)]),
        "start": (answering, [answering.environ("POST", "/start", {"csrf_token": token})]),
        "submit": (done, [done.environ("POST", "/submit", {"csrf_token": token})]),
    }


def run(client: WsgiClient, prepared: list, count: int) -> None:
    wanted = None
    for i in range(count):
        status, _, _ = client.send(prepared[i % len(prepared)])
        if wanted is None:
            wanted = status
        elif status != wanted:
            raise SystemExit(f"status changed from {wanted} to {status} at request {i}")


def timed(client, prepared, count: int) -> tuple[float, float, float]:
    """(CPU µs, wall µs, system-call CPU µs: the kernel's share, e.g. socket I/O) per request."""
    before, wall = os.times(), time.perf_counter()
    run(client, prepared, count)
    after = os.times()
    cpu = (after.user + after.system - before.user - before.system) / count * 1e6
    system = (after.system - before.system) / count * 1e6
    return cpu, (time.perf_counter() - wall) / count * 1e6, system


def count_calls(client, prepared, count: int) -> float:
    """Python function calls per request (cProfile's count): exact, whatever the box's load."""
    profiler = cProfile.Profile()
    profiler.enable()
    run(client, prepared, count)
    profiler.disable()
    return pstats.Stats(profiler).total_calls / count


def profiled(client, prepared, count: int, top: int, restrict="", sort_keys=("tottime", "cumtime")) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    run(client, prepared, count)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    if restrict:  # inclusive time of the frames whose file matches, e.g. "quizapp"
        stats.sort_stats("cumtime").print_stats(restrict, top)
        return out.getvalue()
    stats.strip_dirs()
    for key in sort_keys:
        if key.startswith("callers:"):  # who calls the frames matching the pattern, e.g. callers:__get__
            stats.sort_stats("ncalls").print_callers(key.split(":", 1)[1])
        else:
            stats.sort_stats(key).print_stats(top)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="requests per route and round")
    parser.add_argument("--routes", default="healthz,landing,question,answer,poll,result")
    parser.add_argument("--profile", action="store_true", help="also run each route under cProfile")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--sort", default="tottime,cumtime", help="with --profile: pstats orders")
    parser.add_argument("--restrict", default="", help="with --profile: only frames whose path matches")
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout whose quizapp to import")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per route")
    parser.add_argument(
        "--psycogreen",
        action="store_true",
        help="patch psycopg2 as wsgi.py does: each Postgres round trip is a gevent wait, as in gunicorn",
    )
    args = parser.parse_args()
    if args.psycogreen:
        from psycogreen.gevent import patch_psycopg

        patch_psycopg()
    code = args.code.resolve()
    sys.path.insert(0, str(code))
    os.chdir(code)
    load_services_env(ROOT)
    import gc

    app = build_app()
    routes = prepare(app)
    gc.freeze()  # as gunicorn.conf.py does after boot
    print(f"code: {code}  n={args.n}  rounds={args.rounds}  psycogreen={args.psycogreen}")
    # On a shared box a round's CPU time swings with the neighbours (caches, steal): the best round
    # is the steadiest figure for comparing code; the calls per request (cProfile) are exact.
    header = f"{'route':10} {'best CPU µs':>11} {'median CPU':>11} {'(of it sys)':>11} {'median wall':>12}"
    print(f"{header} {'calls/req':>10}")
    for name in args.routes.split(","):
        client, prepared = routes[name]
        run(client, prepared, min(300, args.n))  # warm-up: caches, pools, compiled templates
        samples = sorted(timed(client, prepared, args.n) for _ in range(args.rounds))
        cpu, wall, system = samples[len(samples) // 2]
        calls = count_calls(client, prepared, min(200, args.n))
        line = f"{name:10} {samples[0][0]:11.0f} {cpu:11.0f} {system:11.0f} {wall:12.0f}"
        print(f"{line} {calls:10.0f}", flush=True)
    if args.profile:
        for name in args.routes.split(","):
            client, prepared = routes[name]
            print(f"\n==== {name}: cProfile, {args.n} requests")
            print(profiled(client, prepared, args.n, args.top, args.restrict, args.sort.split(",")))


if __name__ == "__main__":
    main()
