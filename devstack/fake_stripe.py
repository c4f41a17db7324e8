"""A local stand-in for the Stripe API's wire protocol: checkout sessions (idempotent) and refunds."""

from __future__ import annotations

import itertools
import json
from urllib.parse import parse_qs

import gevent.lock
from gevent.pywsgi import WSGIServer

from devstack.processes import free_port


class FakeStripe:
    """Form-encoded requests in, Stripe-shaped JSON out; Idempotency-Key replays the first answer."""

    def __init__(self, fail=False, fail_refunds=False, create_delay=0.0):
        self.requests = []
        self.fail = fail
        self.fail_refunds = fail_refunds
        self.create_delay = create_delay
        self.sessions: dict[str, dict] = {}
        self.refunds: list[dict] = []
        self.replies: dict[str, tuple[str, bytes]] = {}
        self.locks: dict[str, gevent.lock.BoundedSemaphore] = {}
        self.ids = itertools.count(1)
        self.server = WSGIServer(("127.0.0.1", free_port()), self.app, log=None, error_log=None)

    def app(self, environ, start_response):
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)).decode()
        path, key = environ["PATH_INFO"], environ.get("HTTP_IDEMPOTENCY_KEY")
        self.requests.append((path, environ.get("HTTP_AUTHORIZATION"), parse_qs(body), key))
        lock = self.locks.setdefault(key or f"anon-{len(self.requests)}", gevent.lock.BoundedSemaphore())
        with lock:  # Stripe serialises requests that share an idempotency key
            if key and key in self.replies:
                status, payload = self.replies[key]
                start_response(
                    status, [("Content-Type", "application/json"), ("Idempotent-Replayed", "true")]
                )
                return [payload]
            status, payload = self.answer(path, parse_qs(body))
            if key:
                self.replies[key] = (status, payload)
        start_response(status, [("Content-Type", "application/json"), ("Request-Id", "req_1")])
        return [payload]

    def answer(self, path, form):
        if path == "/v1/checkout/sessions":
            if self.fail:
                return self.error("No such price")
            gevent.sleep(self.create_delay)
            session_id = f"cs_fake_{next(self.ids)}"
            session = {
                "id": session_id,
                "object": "checkout.session",
                "url": f"https://pay.invalid/c/{session_id}",
            }
            self.sessions[session_id] = {**session, "form": form}
            return "200 OK", json.dumps(session).encode()
        if path == "/v1/refunds":
            if self.fail_refunds:
                return self.error("Charge already refunded")
            refund = {
                "id": f"re_fake_{next(self.ids)}",
                "object": "refund",
                "status": "succeeded",
                "payment_intent": form.get("payment_intent", [None])[0],
                "reason": form.get("reason", [None])[0],
            }
            self.refunds.append(refund)
            return "200 OK", json.dumps(refund).encode()
        return "404 Not Found", json.dumps({"error": {"type": "invalid_request_error"}}).encode()

    @staticmethod
    def error(message):
        error = {"error": {"type": "invalid_request_error", "message": message}}
        return "400 Bad Request", json.dumps(error).encode()

    def __enter__(self):
        self.server.start()
        return self

    def __exit__(self, *exc):
        self.server.stop(timeout=1)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_port}"
