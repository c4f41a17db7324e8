"""gunicorn.conf.py's worker (gunicorn's gevent worker on gevent's pywsgi server) keeps what
gunicorn's own request loop did: the keep-alive bound, "Connection: close" while stopping,
max_requests, the access log's route and request id, and one write for a response's head and body."""

from __future__ import annotations

import http.client
import re
import signal
import socket
import time

import pytest

from devstack.processes import wait_for
from devstack.servers import Gunicorn

pytestmark = [pytest.mark.integration]


def _get(conn: http.client.HTTPConnection, path: str = "/healthz") -> http.client.HTTPResponse:
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    return response


def _read_answer(sock: socket.socket) -> tuple[bytes, bytes, int]:
    """(head, body, recv calls) of one answer with a Content-Length."""
    data, calls = b"", 0
    while True:
        chunk = sock.recv(65536)
        calls += 1
        assert chunk, data
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep and len(body) >= int(re.search(rb"(?i)content-length: (\d+)", head).group(1)):
            return head, body, calls


def test_an_idle_keep_alive_connection_is_closed_after_the_bound(tmp_path):
    env = {"QUIZAPP_ENV": "test", "GUNICORN_KEEPALIVE": "1"}
    with Gunicorn("wsgi:app", env=env, log_dir=tmp_path) as app:
        sock = socket.create_connection(("127.0.0.1", app.port), timeout=10)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, _ = _read_answer(sock)
        assert head.startswith(b"HTTP/1.1 200")
        assert b"connection: close" not in head.lower()  # kept alive
        started = time.monotonic()
        assert sock.recv(65536) == b""  # the server closed it, idle
        assert 0.5 < time.monotonic() - started < 5
        sock.close()


def test_a_response_head_and_its_body_leave_in_one_write(tmp_path):
    # One write of head + body arrives whole on loopback: the first recv has all of it. Sent in two
    # writes, the first recv mostly returned the head alone (seen with pywsgi's own writer).
    with Gunicorn("wsgi:app", env={"QUIZAPP_ENV": "test"}, log_dir=tmp_path) as app:
        sock = socket.create_connection(("127.0.0.1", app.port), timeout=10)
        for path in [b"/healthz", b"/", b"/nope"] * 7:
            sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            head, body, calls = _read_answer(sock)
            assert calls == 1 and body, (path, head)
        sock.close()


def test_a_stopping_worker_tells_the_proxy_to_close(tmp_path):
    env = {"QUIZAPP_ENV": "test", "GUNICORN_GRACEFUL_TIMEOUT": "5", "GUNICORN_KEEPALIVE": "5"}
    app = Gunicorn("wsgi:app", env=env, log_dir=tmp_path).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=10)
        assert _get(conn).getheader("Connection") is None  # kept alive while running
        app.signal(signal.SIGTERM)  # the master stops its worker gracefully
        time.sleep(0.5)
        response = _get(conn)  # the open connection is still answered, and told to close
        assert response.status == 200
        assert response.getheader("Connection") == "close"
        conn.close()
        assert app.proc.wait(timeout=10) == 0  # and the worker did not wait out the graceful timeout
    finally:
        app.stop()


def test_max_requests_recycles_the_worker_and_the_access_log_names_route_and_id(tmp_path):
    env = {"QUIZAPP_ENV": "test", "GUNICORN_MAX_REQUESTS": "3", "GUNICORN_ACCESS_LOG": "-"}
    with Gunicorn("wsgi:app", env=env, log_dir=tmp_path) as app:
        for n in range(8):
            conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=10)
            conn.request("GET", f"/r/unknown-result-{n}", headers={"X-Request-ID": f"worker-test-{n:04d}"})
            assert conn.getresponse().status == 404
            conn.close()
            time.sleep(0.2)  # a recycled worker is replaced before the next request

        def logged():
            lines = [line for line in app.log_text().splitlines() if "rid=worker-test-" in line]
            return lines if len(lines) == 8 else None

        lines = wait_for(logged, timeout=10, what="eight access-log lines")
    # The route pattern, never the path (ids and emails stay out of the log); the id; the duration.
    assert all('"GET /r/<public_id:public_id> HTTP/1.1" 404 ' in line for line in lines), lines
    assert not any("unknown-result" in line for line in lines), lines
    assert all(re.search(r"dur_us=\d+ ", line) for line in lines), lines
    pids = {re.search(r"pid=<?(\d+)", line).group(1) for line in lines}
    assert len(pids) >= 2, lines  # recycled after 3 requests
    assert "Autorestarting worker after current request" in app.log_text()
