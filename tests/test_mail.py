"""Mail against a real SMTP server (aiosmtpd, STARTTLS + AUTH): racing mailers, outage, opt-in, unsubscribe."""

from __future__ import annotations

import email
import re

import pytest

from devstack.mail import SmtpServer, make_certificate, start_mailer
from devstack.processes import stop_process, wait_for
from devstack.quiz_walk import csrf_from
from quizapp.config import Config, ConfigError
from quizapp.mail.mailer import Mailer, retry_delay
from tests.support.payments import owned_result

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return make_certificate(tmp_path_factory.mktemp("smtp-cert"))


@pytest.fixture
def mail_app(make_app):
    return make_app(RATELIMIT_ENABLED="false")


def _capture(client, public_id, address):
    token = csrf_from(client.get(f"/r/{public_id}"))
    return client.post(f"/r/{public_id}/email", data={"csrf_token": token, "email": address})


def _outbox(pg_conn, where="TRUE"):
    with pg_conn.cursor() as cur:
        cur.execute(
            f"SELECT id, kind, status, attempts, last_error FROM email_outbox WHERE {where} ORDER BY id"
        )  # noqa: S608
        return cur.fetchall()


def _mailer_env(tmp_path, smtp, cert, **extra):
    return {
        "QUIZAPP_ENV": "test",
        "SMTP_URL": smtp.url(),
        "SMTP_CA_FILE": str(cert),
        "MAIL_POLL_SECONDS": "0.1",
        "MAIL_RETRY_BASE_SECONDS": "0.3",
        "MAIL_RETRY_MAX_SECONDS": "1",
        "MAIL_FROM": "Quiz <quiz@example.org>",
        **extra,
    }


def test_two_racing_mailers_deliver_each_capture_exactly_once(mail_app, pg_conn, tmp_path, certificate):
    cert, key = certificate
    client, public_id = owned_result(mail_app)
    addresses = [f"reader{i}@example.org" for i in range(20)]
    for address in addresses:
        assert _capture(client, public_id, address).status_code == 303
    smtp = SmtpServer(tmp_path, cert, key).start()
    mailers = [start_mailer(tmp_path, f"mailer-{i}", _mailer_env(tmp_path, smtp, cert)) for i in range(2)]
    try:
        wait_for(lambda: len(_outbox(pg_conn, "status = 'sent'")) == 20, 120, "20 sent rows")
    finally:
        for proc in mailers:
            stop_process(proc)
        smtp.stop()
    messages = smtp.messages()
    sent_by = [(tmp_path / f"mailer-{i}.log").read_text().count("msg=mail.sent") for i in range(2)]
    print(f"[figure] 20 captures, 2 racing mailers -> {len(messages)} mails delivered (per mailer {sent_by})")
    assert sorted(m["to"][0] for m in messages) == sorted(addresses)
    assert all(m["tls"] and m["authenticated"] for m in messages)
    parsed = email.message_from_string(messages[0]["data"])
    assert parsed["Subject"] == "Please confirm your email address"
    assert re.match(r"<http://localhost/mail/unsubscribe/[\w.-]+>$", parsed["List-Unsubscribe"])
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "/mail/confirm/" in parsed.get_payload() and "Unsubscribe: http://localhost/mail/unsubscribe/" in (
        parsed.get_payload()
    )
    assert {row[3] for row in _outbox(pg_conn)} == {1}  # one attempt each


def test_after_an_smtp_outage_the_mail_arrives_exactly_once(mail_app, pg_conn, tmp_path, certificate):
    cert, key = certificate
    client, public_id = owned_result(mail_app)
    assert _capture(client, public_id, "patient@example.org").status_code == 303
    smtp = SmtpServer(tmp_path, cert, key)  # not started: the server is down
    mailer = start_mailer(tmp_path, "mailer", _mailer_env(tmp_path, smtp, cert))
    try:
        failed = wait_for(lambda: [r for r in _outbox(pg_conn) if r[3] >= 2], 60, "two failed attempts")
        assert failed[0][2] == "pending" and "ConnectionRefusedError" in failed[0][4]
        smtp.start()
        wait_for(lambda: _outbox(pg_conn, "status = 'sent'"), 60, "the mail to be sent")
        sent = _outbox(pg_conn)[0]
    finally:
        stop_process(mailer)
        smtp.stop()
    print(f"[figure] SMTP outage then recovery -> {len(smtp.messages())} delivery after {sent[3]} attempts")
    assert len(smtp.messages()) == 1 and smtp.messages()[0]["to"] == ["patient@example.org"]
    assert sent[2] == "sent" and sent[3] >= 3 and sent[4] is None


def test_mail_is_dead_after_max_attempts(mail_app, pg_conn, tmp_path):
    client, public_id = owned_result(mail_app)
    _capture(client, public_id, "nobody@example.org")
    env = {
        "QUIZAPP_ENV": "test",
        "SMTP_URL": "smtp://127.0.0.1:9",
        "MAIL_MAX_ATTEMPTS": "3",
        "MAIL_RETRY_BASE_SECONDS": "0.05",
        "MAIL_RETRY_MAX_SECONDS": "0.05",
        "SMTP_TIMEOUT": "2",
    }
    import os

    mailer = Mailer(Config.from_env({**os.environ, **env}))
    try:
        wait_for(lambda: (mailer.deliver_one() or True) and _outbox(pg_conn, "status = 'dead'"), 30, "dead")
    finally:
        mailer.conn.close()
    row = _outbox(pg_conn)[0]
    assert row[2:4] == ("dead", 3) and "ConnectionRefusedError" in row[4]
    assert [retry_delay(n, base=30, cap=3600) for n in (1, 2, 3, 10)] == [30, 60, 120, 3600]
    with mail_app.test_request_context():
        from quizapp.mail import service

        assert service.outbox_figures()["dead"] == 1


def test_double_opt_in_then_one_result_mail_and_unsubscribe(mail_app, pg_conn):
    client, public_id = owned_result(mail_app)
    _capture(client, public_id, "Ada@Example.org")
    with pg_conn.cursor() as cur:
        cur.execute("SELECT body, unsubscribe_url FROM email_outbox")
        body, unsubscribe_url = cur.fetchone()
    confirm = re.search(r"http://localhost(/mail/confirm/\S+)", body).group(1)
    reader = mail_app.test_client()  # the mail is opened anywhere, without the quiz session
    page = reader.get(confirm)
    assert page.status_code == 200 and b"Confirm and send my result" in page.data
    assert [r[1] for r in _outbox(pg_conn)] == ["confirm"]  # a GET (a link scanner) confirms nothing
    assert b"your address is confirmed" in reader.post(confirm).data
    assert reader.post(confirm).status_code == 200
    assert [r[1] for r in _outbox(pg_conn)] == ["confirm", "result"]  # once, however often
    with pg_conn.cursor() as cur:
        cur.execute("SELECT subject, body FROM email_outbox WHERE kind = 'result'")
        subject, result_body = cur.fetchone()
        cur.execute("SELECT count(*) FROM email_subscribers WHERE confirmed_at IS NOT NULL")
        assert cur.fetchone() == (1,)
    assert subject.startswith("Your Business Model Fit result: ") and f"/r/{public_id}" in result_body
    assert reader.get("/mail/confirm/forged-token").status_code == 404
    unsubscribe = unsubscribe_url.removeprefix("http://localhost")
    _capture(client, public_id, "ada@example.org")  # another pending confirmation
    one_click = reader.post(
        unsubscribe, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert one_click.status_code == 200 and b"You are unsubscribed" in one_click.data
    assert [r[2] for r in _outbox(pg_conn)] == ["cancelled"] * 3  # unsent mail to it is cancelled
    assert reader.get("/mail/unsubscribe/forged").status_code == 404


def test_only_the_owner_session_may_capture(mail_app, pg_conn):
    _, public_id = owned_result(mail_app)
    stranger, own_id = owned_result(mail_app)
    token = csrf_from(stranger.get(f"/r/{own_id}"))
    assert b'action="/r/' + public_id.encode() + b'/email"' not in stranger.get(f"/r/{public_id}").data
    response = stranger.post(
        f"/r/{public_id}/email", data={"csrf_token": token, "email": "victim@example.org"}
    )
    assert response.status_code == 403
    with pg_conn.cursor() as cur:
        cur.execute("SELECT (SELECT count(*) FROM email_subscribers), (SELECT count(*) FROM email_outbox)")
        assert cur.fetchone() == (0, 0)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("smtp+starttls://u:p@mail.example.org:587", True),
        ("smtps://u:p@mail.example.org", True),
        ("smtp://127.0.0.1:25", True),
        ("smtp://mail.example.org:25", False),
        ("smtp://u:p@127.0.0.1:25", False),
        ("http://mail.example.org", False),
        ("smtps://u:p@mail.example.org:99999", False),
    ],
)
def test_smtp_url_is_checked_at_start(url, ok):
    env = {
        "DATABASE_URL": "postgresql://x@127.0.0.1/x",
        "REDIS_URL": "redis://127.0.0.1",
        "SECRET_KEY": "k" * 32,
        "SMTP_URL": url,
    }
    if ok:
        assert Config.from_env(env).SMTP_URL == url
    else:
        with pytest.raises(ConfigError, match="SMTP_URL"):
            Config.from_env(env)


def test_without_smtp_url_development_mail_lands_in_files(mail_app, pg_conn, tmp_path):
    import os

    client, public_id = owned_result(mail_app)
    _capture(client, public_id, "dev@example.org")
    env = {**os.environ, "QUIZAPP_ENV": "development", "SMTP_URL": "", "QUIZAPP_VAR_DIR": str(tmp_path)}
    mailer = Mailer(Config.from_env(env))
    try:
        assert mailer.deliver_one() and not mailer.deliver_one()
    finally:
        mailer.conn.close()
    (eml,) = (tmp_path / "mail").glob("*.eml")
    parsed = email.message_from_bytes(eml.read_bytes())
    assert parsed["To"] == "dev@example.org" and parsed["List-Unsubscribe"].startswith(
        "<http://localhost/mail/"
    )
    assert [r[2] for r in _outbox(pg_conn)] == ["sent"]
