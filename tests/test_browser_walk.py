"""One headless Chromium walk (JavaScript off) through nginx to a real gunicorn: quiz, result, email,
pay, report; then neither access log holds a query string, a public id or a checkout session id."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from devstack.nginx import Nginx
from devstack.servers import Gunicorn

WALK = Path(__file__).resolve().parent / "support" / "browser_walk.py"


@pytest.mark.integration
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs /usr/bin/chromium")
def test_browser_walk(pg_conn, tmp_path):
    env = {
        "QUIZAPP_ENV": "test",
        "DATABASE_URL": os.environ["DATABASE_URL"],
        "REDIS_URL": os.environ["REDIS_URL"],
        "PAYMENT_PROVIDER": "test",
        "GUNICORN_ACCESS_LOG": "-",
        "TRUSTED_PROXY_HOPS": "1",
    }
    with (
        Gunicorn("wsgi:app", workers=1, env=env, log_dir=tmp_path) as server,
        Nginx([server.port], tmp_path / "nginx") as nginx,
    ):
        # Playwright's sync API runs its own loop: keep it out of this gevent-patched process.
        done = subprocess.run(
            [sys.executable, str(WALK), nginx.url],
            capture_output=True,
            check=False,
            text=True,
            timeout=600,
            env={k: v for k, v in os.environ.items() if not k.startswith("GEVENT")},
        )
        # The route header is for nginx's log only: clients never see it.
        assert "X-Quizapp-Route" not in requests.get(nginx.url + "/healthz", timeout=10).headers
        log = server.log_text()
        access = nginx.access_log()
    assert done.stdout, done.stderr[-2000:]
    walk = json.loads(done.stdout.strip().splitlines()[-1])
    assert walk["ok"], (walk, done.stderr[-2000:], log[-2000:])
    print(
        f"[figure] browser walk (quiz, result, email, pay, receipt, report, fresh browser): {walk['duration_s']:.2f} s"
    )
    assert walk["questions"] == walk["total"] >= 12 and walk["progress_in_order"]
    assert walk["has_analysis"] and walk["email_thanks"]
    assert walk["report_title"] == "Your full report" and walk["models_in_report"] >= 8
    assert walk["report_url"].endswith("/report")
    assert walk["steps"][-4:] == ["paid", "receipt", "report", "fresh-browser"]
    assert (
        walk["receipt_title"] == "Thank you: your payment is confirmed"
        and "/pay/receipt/" in walk["receipt_url"]
    )
    assert walk["fresh_report_status"] == 403
    assert walk["fresh_report_title"] == "This full report belongs to its buyer"
    assert not walk["fresh_share_shows_report"] and walk["fresh_share_offers_quiz"]
    with pg_conn.cursor() as cur:
        cur.execute("SELECT count(*), count(paid_at) FROM quiz_attempts")
        assert cur.fetchone() == (1, 1)
        cur.execute("SELECT count(*) FROM email_subscribers")
        assert cur.fetchone() == (1,)
        cur.execute("SELECT kind FROM email_outbox ORDER BY id")
        assert cur.fetchall() == [("confirm",), ("receipt",)]
        cur.execute("SELECT count(*) FROM payments")
        assert cur.fetchone() == (1,)
        cur.execute(
            "SELECT a.public_id, p.checkout_session_id FROM quiz_attempts a JOIN payments p ON p.attempt_id = a.id"
        )
        public_id, checkout_id = cur.fetchone()
    assert "Traceback" not in log
    _assert_logs_hold_routes_only(gunicorn_log=log, nginx_log=access, secrets=(public_id, checkout_id))


def _assert_logs_hold_routes_only(gunicorn_log: str, nginx_log: str, secrets) -> None:
    for name, text in (("gunicorn", gunicorn_log), ("nginx", nginx_log)):
        for secret in (*secrets, "walker", "example.org", "email=", "utm_source", "session_id="):
            assert secret not in text, (name, secret)
        lines = re.findall(r'"(?:GET|POST) ([^ "]*) HTTP/1\.[01]"', text)
        assert lines and not [r for r in lines if "?" in r], (name, lines)
        # The route pattern stands in for the path.
        for route in (
            "/r/<public_id:public_id>",
            "/pay/test/<checkout_id:session_id>",
            "/pay/return/<public_id:public_id>",
        ):
            assert route in lines, (name, route, sorted(set(lines)))
        assert "/r/<public_id:public_id>/report" in lines, name
