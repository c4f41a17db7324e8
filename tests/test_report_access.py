"""The paid report belongs to its buyer: session or signed revocable link; share page and nginx show no report."""

from __future__ import annotations

import os
import re
import time

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from devstack.quiz_walk import csrf_from
from devstack.stack import Stack
from quizapp.links import REPORT_LINK, report_link_token
from tests.support.payments import click_unlock, owned_result

SECRET_KEY = "report-access-" + "k" * 32


class MonthOldSigner(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(time.time()) - 31 * 86400  # REPORT_LINK_DAYS defaults to 30


@pytest.fixture
def app(make_app):
    return make_app(SECRET_KEY=SECRET_KEY, RATELIMIT_ENABLED="false")


def _buy(app, email="buyer@example.org"):
    client, public_id = owned_result(app)
    location = click_unlock(client, public_id).headers["Location"]
    page = client.get(location)
    paid = client.post(location, data={"csrf_token": csrf_from(page), "email": email})
    assert client.get(paid.headers["Location"]).headers["Location"].endswith(f"/pay/receipt/{public_id}")
    return client, public_id


def _report_link(pg_conn):
    with pg_conn.cursor() as cur:
        cur.execute("SELECT body FROM email_outbox WHERE kind = 'receipt'")
        body = cur.fetchone()[0]
    return re.search(r"http://localhost(/r/\S+/report\?key=\S+)", body).group(1)


def test_buyer_session_sees_report_and_receipt_privately(app, pg_conn):
    client, public_id = _buy(app)
    for path in (f"/r/{public_id}/report", f"/pay/receipt/{public_id}", f"/r/{public_id}"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["Cache-Control"] == "private, no-store"
    report = client.get(f"/r/{public_id}/report").data
    assert b"Your answers" in report and b"Revoke the emailed links" in report
    receipt = client.get(f"/pay/receipt/{public_id}").data
    assert b"9.00 USD" in receipt and b"Open your full report" in receipt and b"cs_test_" in receipt
    with pg_conn.cursor() as cur:
        cur.execute("SELECT kind, subject FROM email_outbox")
        assert cur.fetchall() == [("receipt", "Your receipt: full business model report")]


def test_without_session_or_link_the_report_is_refused(app):
    owner, public_id = _buy(app)
    stranger = app.test_client()
    response = stranger.get(f"/r/{public_id}/report")
    assert response.status_code == 403 and response.headers["Cache-Control"] == "private, no-store"
    assert b"belongs to its buyer" in response.data and b"Your answers" not in response.data
    assert stranger.get(f"/pay/receipt/{public_id}").status_code == 403
    assert stranger.get(f"/r/{public_id}/report?key=forged").status_code == 403
    share = stranger.get(f"/r/{public_id}")  # the share page: the free result, no more
    assert share.status_code == 200
    for absent in (
        b"Your answers",
        b"Open the full report",
        b"Unlock the full report",
        b"Email me this result",
    ):
        assert absent not in share.data
    assert b"Take the quiz" in share.data
    og = dict(re.findall(rb'<meta property="(og:[a-z:]+)" content="([^"]*)"', share.data))
    assert og[b"og:title"].startswith(b"Best-fitting business model: ")
    assert og[b"og:description"] and og[b"og:image"].endswith(b"/static/img/og-image.png")
    with stranger.get("/static/img/og-image.png") as image:
        assert image.status_code == 200 and image.data.startswith(b"\x89PNG")


def test_unpaid_owner_gets_an_offer_to_buy(app):
    client, public_id = owned_result(app)
    response = client.get(f"/r/{public_id}/report")
    assert response.status_code == 403 and b"Unlock the full report" in response.data


def test_mailed_link_opens_the_report_elsewhere_until_revoked_or_expired(app, pg_conn):
    owner, public_id = _buy(app)
    link = _report_link(pg_conn)
    other_device = app.test_client()
    assert other_device.get(link).status_code == 200
    assert b"Revoke the emailed links" not in other_device.get(link).data  # only the buyer's session
    other_attempt = owned_result(app)[1]
    with app.test_request_context():
        wrong_result = report_link_token(public_id=other_attempt, link_version=1)
        signer = URLSafeTimedSerializer(SECRET_KEY, salt=f"quizapp.{REPORT_LINK}", signer=MonthOldSigner)
        old = signer.dumps({"r": public_id, "v": 1})
    assert other_device.get(f"/r/{public_id}/report?key={wrong_result}").status_code == 403
    assert other_device.get(f"/r/{public_id}/report?key={old}").status_code == 403
    page = owner.get(f"/r/{public_id}/report")
    revoked = owner.post(f"/r/{public_id}/report/revoke-links", data={"csrf_token": csrf_from(page)})
    assert revoked.status_code == 303
    assert other_device.get(link).status_code == 403
    assert owner.get(f"/r/{public_id}/report").status_code == 200
    assert other_device.post(f"/r/{public_id}/report/revoke-links").status_code in (400, 403)


def test_only_the_owner_may_start_a_checkout(app):
    _, public_id = owned_result(app)
    stranger, own_id = owned_result(app)
    token = csrf_from(stranger.get(f"/r/{own_id}"))
    response = stranger.post("/pay/checkout", data={"csrf_token": token, "public_id": public_id})
    assert response.status_code == 403


@pytest.mark.integration
def test_through_nginx_the_report_needs_the_buyer(tmp_path, pg_conn, app):
    public_id = "nginx-paid-result"
    with pg_conn.cursor() as cur:
        cur.execute(
            "INSERT INTO quiz_attempts (attempt_key, public_id, answers, scores, top_model, paid_at, owner_key)"
            " VALUES ('k-nginx', %s, '{}', %s, 'saas', now(), 'someone-else')",
            (public_id, '[{"model_id": "saas", "score": 80, "reasons": ["r"]}]'),
        )
    with app.test_request_context():
        link = report_link_token(public_id=public_id, link_version=1)
    env = {
        "QUIZAPP_ENV": "test",
        "SECRET_KEY": SECRET_KEY,
        "DATABASE_URL": os.environ["DATABASE_URL"],
        "REDIS_URL": os.environ["REDIS_URL"],
    }
    import requests

    with Stack(tmp_path, instances=1, env=env) as stack:
        refused = requests.get(f"{stack.url}/r/{public_id}/report", timeout=30)
        opened = requests.get(f"{stack.url}/r/{public_id}/report", params={"key": link}, timeout=30)
        share = requests.get(f"{stack.url}/r/{public_id}", timeout=30)
        favicon = requests.get(f"{stack.url}/favicon.ico", timeout=30)
    assert refused.status_code == 403 and refused.headers["Cache-Control"] == "private, no-store"
    assert "belongs to its buyer" in refused.text and "Your answers" not in refused.text
    assert opened.status_code == 200 and "Your answers" in opened.text
    assert opened.headers["Cache-Control"] == "private, no-store"
    assert share.status_code == 200 and "Your answers" not in share.text
    assert favicon.status_code == 200 and favicon.headers["Content-Type"].startswith("image/")
