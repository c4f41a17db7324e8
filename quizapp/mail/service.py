"""Mail use cases: capture with double opt-in, confirm, unsubscribe, and queue receipts."""

from __future__ import annotations

import logging

from email_validator import EmailNotValidError, validate_email
from flask import current_app, render_template

from .. import db
from ..errors import BadRequest, Forbidden, NotFound
from ..links import absolute_url
from ..quiz import access
from ..quiz import repository as quiz_repository
from ..signing import read_token, sign_token
from . import repository

log = logging.getLogger(__name__)

CONFIRM, UNSUBSCRIBE = "mail-confirm", "mail-unsubscribe"


def _sign(purpose: str, payload) -> str:
    return sign_token(secret_key=current_app.config["SECRET_KEY"], purpose=purpose, payload=payload)


def _read(purpose: str, token: str, max_age_seconds=None):
    return read_token(
        secret_key=current_app.config["SECRET_KEY"],
        purpose=purpose,
        token=token,
        max_age_seconds=max_age_seconds,
    )


def normalized_email(raw_email: str) -> str:
    raw_email = (raw_email or "").strip()
    if not raw_email or len(raw_email) > 254:
        raise BadRequest("Please enter a valid email address.")
    try:
        return validate_email(raw_email, check_deliverability=False).normalized
    except EmailNotValidError:
        raise BadRequest("Please enter a valid email address.") from None


def capture_email(session, public_id: str, raw_email: str) -> None:
    """Only the result's owner may ask for it by mail; the first mail asks to confirm the address."""
    email = normalized_email(raw_email)
    db.run_in_transaction(_store_capture, session=session, public_id=public_id, email=email)


def _store_capture(cur, *, session, public_id, email):
    attempt = quiz_repository.attempt_by_public_id(cur, public_id)
    if attempt is None:
        raise NotFound("We could not find that result.")
    if not access.owns(session, attempt):
        raise Forbidden("Only the person who took this quiz can have its result emailed.")
    subscriber_id = repository.upsert_subscriber(cur, email=email, attempt_id=attempt["id"])
    token = _sign(CONFIRM, {"s": subscriber_id, "a": attempt["id"]})
    queue_mail(
        cur,
        subscriber_id=subscriber_id,
        attempt_id=attempt["id"],
        kind="confirm",
        template="mail/confirm.txt",
        confirm_url=absolute_url("mail.confirm", token=token),
        days=current_app.config["MAIL_CONFIRM_DAYS"],
    )
    log.info("mail.capture_queued", extra={"attempt_id": attempt["id"]})


def queue_mail(cur, *, subscriber_id, attempt_id, kind, template, dedup_key=None, **context):
    """Render a mail now (links need the app) and queue it; the mailer only sends."""
    unsubscribe_url = absolute_url("mail.unsubscribe", token=_sign(UNSUBSCRIBE, {"s": subscriber_id}))
    text = render_template(template, unsubscribe_url=unsubscribe_url, **context)
    subject, _, body = text.partition("\n")
    return repository.enqueue(
        cur,
        subscriber_id=subscriber_id,
        attempt_id=attempt_id,
        kind=kind,
        subject=subject.removeprefix("Subject: ").strip(),
        body=body.lstrip("\n"),
        unsubscribe_url=unsubscribe_url,
        dedup_key=dedup_key,
    )


def confirmation(token: str) -> dict:
    """What the confirmation page shows; NotFound for a bad or expired link."""
    max_age = current_app.config["MAIL_CONFIRM_DAYS"] * 86400
    payload = _read(CONFIRM, token, max_age_seconds=max_age)
    if not isinstance(payload, dict) or not isinstance(payload.get("s"), int):
        raise NotFound("This confirmation link is not valid or has expired. Please ask for the result again.")
    return payload


def confirm_email(token: str, ranked_for) -> None:
    """Confirm the address and queue the result mail, once however often the link is used."""
    payload = confirmation(token)
    db.run_in_transaction(_confirm, payload=payload, ranked_for=ranked_for)


def _confirm(cur, *, payload, ranked_for):
    subscriber = repository.subscriber(cur, payload["s"])
    attempt = quiz_repository.attempt_by_id(cur, payload.get("a"))
    if subscriber is None or attempt is None:
        raise NotFound("This confirmation link is no longer valid.")
    repository.confirm_subscriber(cur, subscriber["id"])
    ranked = ranked_for(attempt)
    queue_mail(
        cur,
        subscriber_id=subscriber["id"],
        attempt_id=attempt["id"],
        kind="result",
        template="mail/result.txt",
        dedup_key=f"result:{subscriber['id']}:{attempt['id']}",
        top=ranked[0],
        others=ranked[1:3],
        result_url=absolute_url("quiz.result", public_id=attempt["public_id"]),
    )


def subscriber_for_unsubscribe(token: str) -> int:
    payload = _read(UNSUBSCRIBE, token)
    if not isinstance(payload, dict) or not isinstance(payload.get("s"), int):
        raise NotFound("This unsubscribe link is not valid.")
    return payload["s"]


def unsubscribe(token: str) -> None:
    subscriber_id = subscriber_for_unsubscribe(token)
    db.run_in_transaction(repository.unsubscribe, subscriber_id)
    log.info("mail.unsubscribed")


def queue_receipt(cur, *, attempt, email, amount_cents, currency, reference, paid_at, report_url):
    """The receipt (transactional: no opt-in needed, sent even after an unsubscribe)."""
    subscriber_id = repository.upsert_subscriber(cur, email=email, attempt_id=attempt["id"])
    return queue_mail(
        cur,
        subscriber_id=subscriber_id,
        attempt_id=attempt["id"],
        kind="receipt",
        template="mail/receipt.txt",
        dedup_key=f"receipt:{reference}",
        amount_cents=amount_cents,
        currency=currency,
        reference=reference,
        paid_at=paid_at,
        report_url=report_url,
    )


def outbox_figures() -> dict:
    """For health: mail due for over 5 minutes (the mailer is stuck or SMTP is down) and dead letters."""
    return db.run_read(repository.outbox_figures, backlog_after_seconds=300)
