"""A fake OpenAI chat-completions server for tests and benchmarks, speaking the real wire format.

Run it: python -m devstack.fake_openai --port 8900 --latency 0.5 --rpm 60 [--window 60]
Admin:  POST /_fake/mode {"mode": "ok|error500|hang|malformed|ratelimit", "count": N,
                          "latency": s, "rpm": n, "window": s, "retry_after": s}
        GET /_fake/calls  -> {"calls": [{"start", "end", "status", "concurrency"}...], "max_concurrency"}
        POST /_fake/reset -> clears the call log and the rate-limit window
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

import gevent
from gevent.pywsgi import WSGIServer

MODES = ("ok", "error500", "hang", "malformed", "ratelimit")


class FakeOpenAI:
    """The state of one fake upstream: settings, rate-limit window and call log."""

    def __init__(self, latency=0.3, rpm=600, window=60.0, retry_after=1.0):
        self.latency = latency
        self.rpm = rpm
        self.window = window
        self.retry_after = retry_after
        self.mode = "ok"
        self.mode_count = None  # calls left in this mode; None means until changed
        self.lock = threading.Lock()
        self.accepted = deque()
        self.calls = []
        self.concurrency = 0
        self.max_concurrency = 0

    # -- admin -------------------------------------------------------------------------------
    def set_mode(self, body: dict) -> dict:
        with self.lock:
            if "mode" in body:
                if body["mode"] not in MODES:
                    raise ValueError(f"mode must be one of {MODES}")
                self.mode = body["mode"]
                self.mode_count = body.get("count")
            for name in ("latency", "rpm", "window", "retry_after"):
                if name in body:
                    setattr(self, name, type(getattr(self, name))(body[name]))
            return self.settings()

    def settings(self) -> dict:
        # A plain dict of this fake's knobs: alike in shape to webhook.py's dict literals, nothing shared.
        return {
            "mode": self.mode,
            "count": self.mode_count,
            "latency": self.latency,
            "rpm": self.rpm,
            "window": self.window,
            "retry_after": self.retry_after,
        }

    def reset(self) -> None:
        with self.lock:
            self.accepted.clear()
            self.calls = []
            self.max_concurrency = self.concurrency

    def call_log(self) -> dict:
        with self.lock:
            return {
                "calls": list(self.calls),
                "max_concurrency": self.max_concurrency,
                **self.settings(),
            }

    # -- upstream ----------------------------------------------------------------------------
    def _take_mode(self) -> str:
        mode = self.mode
        if self.mode_count is not None:
            self.mode_count -= 1
            if self.mode_count <= 0:
                self.mode, self.mode_count = "ok", None
        return mode

    def _rate_limited(self, now: float) -> float | None:
        """Seconds until a slot frees if this call exceeds the RPM window, else None (and count it)."""
        while self.accepted and self.accepted[0] <= now - self.window:
            self.accepted.popleft()
        if len(self.accepted) >= self.rpm:
            return max(0.001, self.accepted[0] + self.window - now)
        self.accepted.append(now)
        return None

    def complete(self, body: dict):
        """Answer one chat completion: (status, headers, payload bytes)."""
        with self.lock:
            start = time.time()
            self.concurrency += 1
            self.max_concurrency = max(self.max_concurrency, self.concurrency)
            record = {
                "start": start,
                "end": None,
                "status": None,
                "concurrency": self.concurrency,
            }
            self.calls.append(record)
            mode = self._take_mode()
            wait = self.retry_after if mode == "ratelimit" else self._rate_limited(start)
            latency = self.latency
        try:
            status, headers, payload = self._answer(mode, wait, latency, body)
        finally:
            with self.lock:
                self.concurrency -= 1
                record["end"] = time.time()
        record["status"] = status
        return status, headers, payload

    def _answer(self, mode, wait, latency, body):
        headers = [
            ("x-ratelimit-limit-requests", str(self.rpm)),
            (
                "x-ratelimit-remaining-requests",
                str(max(0, self.rpm - len(self.accepted))),
            ),
            ("x-ratelimit-reset-requests", f"{self.window:.0f}s"),
        ]
        if wait is not None:
            headers += [
                ("retry-after", str(max(1, round(wait)))),
                ("retry-after-ms", str(int(wait * 1000))),
            ]
            error = {
                "message": "Rate limit reached for requests",
                "type": "requests",
                "code": "rate_limit_exceeded",
            }
            return 429, headers, json.dumps({"error": error}).encode()
        if mode == "hang":
            gevent.sleep(3600)
        gevent.sleep(latency)
        if mode == "error500":
            error = {
                "message": "The server had an error",
                "type": "server_error",
                "code": None,
            }
            return 500, headers, json.dumps({"error": error}).encode()
        if mode == "malformed":
            return 200, headers, b'{"id": "chatcmpl-broken", "choices": [{"mess'
        return 200, headers, json.dumps(_completion(body)).encode()


def _completion(body: dict) -> dict:
    messages = body.get("messages") or []
    prompt = "\n".join(str(m.get("content", "")) for m in messages)
    digest = hashlib.sha256(prompt.encode()).hexdigest()[:12]
    text = f"Fake AI analysis {digest}: your answers point to a clear first step."
    return {
        "id": f"chatcmpl-{digest}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "gpt-4o-mini"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": len(prompt) // 4,
            "completion_tokens": 16,
            "total_tokens": len(prompt) // 4 + 16,
        },
    }


def make_wsgi(fake: FakeOpenAI):
    def app(environ, start_response):
        path, method = environ["PATH_INFO"], environ["REQUEST_METHOD"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        status, headers, payload = 404, [], b'{"error": {"message": "not found"}}'
        if method == "POST" and path == "/v1/chat/completions":
            if not environ.get("HTTP_AUTHORIZATION", "").startswith("Bearer "):
                status, payload = (
                    401,
                    b'{"error": {"message": "missing key", "type": "invalid_request_error"}}',
                )
            else:
                status, headers, payload = fake.complete(body)
        elif method == "POST" and path == "/_fake/mode":
            try:
                status, payload = 200, json.dumps(fake.set_mode(body)).encode()
            except (ValueError, TypeError) as exc:
                status, payload = 400, json.dumps({"error": str(exc)}).encode()
        elif method == "POST" and path == "/_fake/reset":
            fake.reset()
            status, payload = 200, b'{"reset": true}'
        elif method == "GET" and path == "/_fake/calls":
            status, payload = 200, json.dumps(fake.call_log()).encode()
        reasons = {
            200: "OK",
            400: "Bad Request",
            401: "Unauthorized",
            404: "Not Found",
            429: "Too Many Requests",
        }
        start_response(
            f"{status} {reasons.get(status, 'Internal Server Error')}",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(payload))),
                *headers,
            ],
        )
        return [payload]

    return app


class FakeOpenAIProcess:
    """Run this module as a separate process (a test's, or `make stack`'s); stop it by pid."""

    def __init__(self, port: int, latency=0.3, rpm=600, window=60.0, retry_after=1.0, log_path=None):
        self.port = port
        self.args = ["--port", str(port), "--latency", str(latency), "--rpm", str(rpm)]
        self.args += ["--window", str(window), "--retry-after", str(retry_after)]
        self.log_path = log_path  # None: output discarded
        self.proc: subprocess.Popen | None = None

    # port/proc/url properties: the shape of every local server here (Nginx, Gunicorn), no shared logic.
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/_fake"

    def start(self) -> FakeOpenAIProcess:
        from devstack.processes import ROOT, spawn_logged, wait_http

        command = [sys.executable, "-m", "devstack.fake_openai", *self.args]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = spawn_logged(command, Path(self.log_path or os.devnull), env=env)
        try:
            wait_http(self.admin_url + "/calls", timeout=120, proc=self.proc)  # a saturated CPU starts slowly
        except RuntimeError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        from devstack.processes import stop_process

        stop_process(self.proc, timeout=10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def set_mode(self, **settings) -> dict:
        import requests

        return requests.post(self.admin_url + "/mode", json=settings, timeout=5).json()

    def reset(self) -> None:
        import requests

        requests.post(self.admin_url + "/reset", timeout=5)

    def calls(self) -> dict:
        import requests

        return requests.get(self.admin_url + "/calls", timeout=5).json()


def max_starts_in_window(starts: list[float], window: float) -> int:
    """The most call starts inside any half-open interval [t, t + window) of the log."""
    starts = sorted(starts)
    best, left = 0, 0
    for right, start in enumerate(starts):
        while start - starts[left] >= window:
            left += 1
        best = max(best, right - left + 1)
    return best


def synthetic_inputs(variant) -> dict:
    """Prompt inputs shaped like the quiz's (no personal data); equal variants give equal prompts."""
    return {
        "top_models": [
            {
                "id": "saas",
                "name": "Software as a service",
                "score": 80 + len(str(variant)) % 20,
                "reasons": [f"variant {variant}", "you like recurring revenue"],
                "description": "Sell a subscription to software.",
                "strengths": ["recurring revenue"],
                "risks": ["churn"],
                "first_steps": ["Interview five possible customers this week."],
            },
            {
                "id": "agency",
                "name": "Agency",
                "score": 61,
                "reasons": ["you enjoy client work"],
            },
        ],
        "answers": {"q1": "a", "q2": str(variant)},
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--rpm", type=int, default=600)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--retry-after", type=float, default=1.0)
    args = parser.parse_args(argv)
    fake = FakeOpenAI(
        latency=args.latency,
        rpm=args.rpm,
        window=args.window,
        retry_after=args.retry_after,
    )
    server = WSGIServer((args.host, args.port), make_wsgi(fake), log=None)
    print(f"fake openai on http://{args.host}:{args.port}/v1", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()
    main()
