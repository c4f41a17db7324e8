"""Webhook verification matrix and exactly-once unlocks (replays and 20 parallel deliveries)."""

from __future__ import annotations

import json
import time

import gevent
import pytest

from quizapp.payments.providers import completed_event, sign_payload, webhook_secret
from tests.support.quiz_pages import answer_all, submit

SECRET = "whsec_test_" + "s" * 24


@pytest.fixture
def paid_app(make_app):
    return make_app(STRIPE_WEBHOOK_SECRET=SECRET)


@pytest.fixture
def public_id(paid_app):
    client = paid_app.test_client()
    answer_all(client, paid_app.extensions["quiz_content"])
    return submit(client).headers["Location"].rsplit("/", 1)[-1]


def _post(client, payload, signature):
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return client.post("/pay/webhook", data=payload, headers=headers)


def _payments(pg_conn):
    with pg_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM payments")
        count = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM quiz_attempts WHERE paid_at IS NOT NULL")
        return count, cur.fetchone()[0]


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("valid", 200),
        ("wrong_secret", 400),
        ("stale_timestamp", 400),
        ("future_timestamp_ok", 200),
        ("missing_header", 400),
        ("garbled_header", 400),
        ("tampered_payload", 400),
    ],
)
def test_signature_matrix(paid_app, public_id, pg_conn, case, status):
    payload = completed_event("cs_test_1", public_id, 900)
    signature = {
        "valid": sign_payload(payload, SECRET),
        "wrong_secret": sign_payload(payload, "whsec_someone_else"),
        "stale_timestamp": sign_payload(payload, SECRET, int(time.time()) - 301),
        "future_timestamp_ok": sign_payload(payload, SECRET, int(time.time()) + 30),
        "missing_header": None,
        "garbled_header": "t=abc,v1=",
        "tampered_payload": sign_payload(payload.replace('"amount_total":900', '"amount_total":1'), SECRET),
    }[case]
    response = _post(paid_app.test_client(), payload, signature)
    assert response.status_code == status
    assert b"Traceback" not in response.data
    expected = (1, 1) if status == 200 else (0, 0)
    assert _payments(pg_conn) == expected


def test_replay_unlocks_once(paid_app, public_id, pg_conn):
    client = paid_app.test_client()
    payload = completed_event("cs_test_1", public_id, 900)
    signature = sign_payload(payload, SECRET)
    outcomes = [_post(client, payload, signature).get_json()["outcome"] for _ in range(3)]
    assert outcomes == ["unlocked", "duplicate", "duplicate"]
    assert _payments(pg_conn) == (1, 1)


def test_twenty_parallel_identical_webhooks_record_one_payment(paid_app, public_id, pg_conn):
    payload = completed_event("cs_test_1", public_id, 900)
    signature = sign_payload(payload, SECRET)
    jobs = [gevent.spawn(_post, paid_app.test_client(), payload, signature) for _ in range(20)]
    gevent.joinall(jobs, raise_error=True)
    assert [job.value.status_code for job in jobs] == [200] * 20
    outcomes = sorted(job.value.get_json()["outcome"] for job in jobs)
    assert outcomes == ["duplicate"] * 19 + ["unlocked"]
    assert _payments(pg_conn) == (1, 1)


def test_other_events_and_unknown_results_are_acknowledged_without_unlock(paid_app, public_id, pg_conn):
    client = paid_app.test_client()
    event = json.loads(completed_event("cs_test_1", public_id, 900))
    event["type"] = "checkout.session.expired"
    other = json.dumps(event)
    assert _post(client, other, sign_payload(other, SECRET)).get_json()["outcome"] == "ignored"
    unknown = completed_event("cs_test_2", "no-such-result", 900)
    assert _post(client, unknown, sign_payload(unknown, SECRET)).get_json()["outcome"] == "unknown"
    broken = "{not json"
    assert _post(client, broken, sign_payload(broken, SECRET)).status_code == 400
    assert _payments(pg_conn) == (0, 0)


def test_dev_secret_is_derived_from_secret_key(make_app):
    app = make_app(STRIPE_WEBHOOK_SECRET="", SECRET_KEY="k" * 32)
    other = make_app(STRIPE_WEBHOOK_SECRET="", SECRET_KEY="j" * 32)
    assert webhook_secret(app.config).startswith("whsec_dev_")
    assert webhook_secret(app.config) != webhook_secret(other.config)
    assert webhook_secret(app.config) == webhook_secret(make_app(SECRET_KEY="k" * 32).config)
