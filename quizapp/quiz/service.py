"""Quiz use cases: start, answer, submit (one transaction), show results, capture emails."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import current_app, request

from .. import db
from ..ai import service as ai_service
from ..errors import BadRequest, Forbidden, NotFound, TooManyRequests
from ..security.addresses import address_group
from . import access, repository
from .data import Content, Question
from .scoring import missing_questions, score_answers, validate_answer

log = logging.getLogger(__name__)

QUIZ_KEY, USER_KEY = "quiz", access.USER_KEY
FORM_MAX_BYTES = 4096  # an answer form is a token and one small number
PUBLIC_ID_BYTES = 16


class InvalidAnswer(BadRequest):
    """A rejected answer; the page is re-rendered with the message and the answers kept."""


def content() -> Content:
    return current_app.extensions["quiz_content"]


def _state(session) -> dict:
    return session.get(QUIZ_KEY) or {}


def answers_of(session) -> dict:
    return content().unpack_answers(_state(session).get("a") or "")


def in_progress(session) -> bool:
    return bool(_state(session).get("k"))


def result_id_of(session) -> str | None:
    return _state(session).get("r")


def start_quiz(session) -> str:
    """Begin a fresh attempt (new idempotency key, no answers); return the first question id."""
    session[QUIZ_KEY] = {"k": secrets.token_urlsafe(16), "a": "", "t": int(time.time())}
    user_token(session)
    return content().questions[0].id


def user_token(session) -> str:
    if USER_KEY not in session:
        session[USER_KEY] = secrets.token_urlsafe(16)
    return session[USER_KEY]


def _hmac(label: str, value: str) -> str:
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, f"{label}:{value}".encode(), hashlib.sha256).hexdigest()[:32]


def user_key(session, ip: str | None = None) -> str:
    """An opaque per-visitor key for the AI service: derived from the session, not its id.

    A visitor without a session (someone opening a shared result) is keyed by address, so that
    looking at a result stores no session.
    """
    if USER_KEY in session:
        return _hmac("user", session[USER_KEY])
    return _hmac("user-address", address_group(ip, current_app.config["RATELIMIT_IPV6_PREFIX"]))


def quota_keys(session, ip: str | None) -> tuple[str, str]:
    """The daily quota's two counters: this person (session) and their address (IPv6: /64)."""
    address = address_group(ip, current_app.config["RATELIMIT_IPV6_PREFIX"])
    return _hmac("quota", user_token(session)), _hmac("quota-address", address)


def next_unanswered(session) -> str | None:
    answers = answers_of(session)
    return next((q.id for q in content().questions if q.id not in answers), None)


@dataclass
class QuestionPage:
    question: Question
    number: int
    total: int
    previous_id: str | None
    selected: int | None


def question_page(session, question_id: str) -> QuestionPage:
    """The page for one question; an unknown id is rejected with the answers kept."""
    quiz = content()
    question = quiz.question(question_id)
    if question is None:
        raise InvalidAnswer("That question does not exist. Your answers so far are kept.", status=404)
    index = quiz.index_of(question_id)
    return QuestionPage(
        question=question,
        number=index + 1,
        total=len(quiz.questions),
        previous_id=quiz.questions[index - 1].id if index else None,
        selected=_answer_at(quiz, _state(session).get("a") or "", index),
    )


def _answer_at(quiz: Content, packed: str, index: int) -> int | None:
    """answers_of(session).get(question_id) for one question, without unpacking all the others."""
    version, _, digits = packed.partition(":")
    if version != quiz.fingerprint or len(digits) != len(quiz.questions) or digits[index] == "-":
        return None
    return int(digits[index])


def record_answer(session, question_id: str, form, content_length: int | None) -> str | None:
    """Validate and store one answer; return the next question id (None when all are answered)."""
    if not in_progress(session):
        start_quiz(session)
    page = question_page(session, question_id)
    if content_length is not None and content_length > FORM_MAX_BYTES:
        raise InvalidAnswer("That form was larger than an answer can be. Please choose again.")
    values = form.getlist("choice")
    if not values:
        raise InvalidAnswer("Please choose an answer before going on.")
    choice = validate_answer(page.question, values[0]) if len(values) == 1 else None
    if choice is None:
        raise InvalidAnswer("That answer is not one of the choices. Please choose again.")
    quiz = content()
    state = dict(_state(session))
    answers = {**quiz.unpack_answers(state.get("a") or ""), question_id: choice}
    state["a"] = quiz.pack_answers(answers)
    if state.pop("r", None):  # changing a submitted answer makes a new attempt, not the old result
        state["k"] = secrets.token_urlsafe(16)
    session[QUIZ_KEY] = state
    following = quiz.questions[page.number :] + quiz.questions[: page.number]
    return next((q.id for q in following if q.id not in answers), None)


def review(session) -> list[tuple[Question, int | None]]:
    answers = answers_of(session)
    return [(q, answers.get(q.id)) for q in content().questions]


def submit(session, ip: str | None) -> str:
    """Score and record the attempt in one transaction (idempotent per attempt key); public id."""
    if not in_progress(session):
        raise InvalidAnswer("Please start the quiz first.")
    quiz = content()
    answers = answers_of(session)
    missing = missing_questions(quiz, answers)
    if missing:
        numbers = ", ".join(str(quiz.index_of(m) + 1) for m in missing)
        raise InvalidAnswer(f"Please answer every question first (missing: {numbers}).")
    state = _state(session)
    scores = [s.as_dict() for s in score_answers(quiz, answers)]
    started = datetime.fromtimestamp(state.get("t") or time.time(), tz=UTC)
    person, address = quota_keys(session, ip)
    attempt = db.run_in_transaction(
        _record_attempt,
        attempt_key=state["k"],
        answers=answers,
        scores=scores,
        started_at=started,
        quota=DailyQuota(
            person=person,
            address=address,
            per_person=current_app.config["QUIZ_DAILY_QUOTA"],
            per_address=current_app.config["QUIZ_ADDRESS_DAILY_QUOTA"],
        ),
        owner_key=access.owner_key_from_token(user_token(session)),
    )
    session[QUIZ_KEY] = {**state, "r": attempt["public_id"]}
    return attempt["public_id"]


@dataclass(frozen=True)
class DailyQuota:
    """Results a person, and everyone on their address together, may record per day."""

    person: str
    address: str
    per_person: int
    per_address: int


def _record_attempt(cur, *, attempt_key, answers, scores, started_at, quota: DailyQuota, owner_key=None):
    row = repository.insert_attempt(
        cur,
        attempt_key=attempt_key,
        public_id=secrets.token_urlsafe(PUBLIC_ID_BYTES),
        answers=answers,
        scores=scores,
        top_model=scores[0]["model_id"],
        started_at=started_at,
        owner_key=owner_key,
    )
    if row is None:  # already recorded: a refresh or double submit, not another result
        return repository.attempt_by_key(cur, attempt_key)
    today = datetime.now(UTC).date()
    if repository.take_quota(cur, client_key=quota.person, day=today, daily_quota=quota.per_person) is None:
        raise TooManyRequests(  # raising rolls back the attempt inserted above
            f"You have reached today's limit of {quota.per_person} results. Please come back tomorrow.",
            retry_after=3600,
        )
    if (
        repository.take_address_quota(
            cur, address_key=quota.address, day=today, daily_quota=quota.per_address
        )
        is None
    ):
        raise TooManyRequests(
            "Your network has reached today's limit of results. Please come back tomorrow.",
            retry_after=3600,
        )
    log.info(
        "quiz.attempt_recorded",
        extra={"attempt_id": row["id"], "top_model": row["top_model"]},
    )
    return row


def load_attempt(public_id: str) -> dict:
    if not public_id or len(public_id) > 64:
        raise NotFound("We could not find that result.")
    row = db.run_read(repository.attempt_by_public_id, public_id)
    if row is None:
        raise NotFound("We could not find that result.")
    return row


def ranked_models(attempt: dict) -> list[dict]:
    quiz = content()
    ranked = []
    for entry in attempt["scores"]:
        model = quiz.model(entry["model_id"])
        if model is not None:
            ranked.append(
                {
                    **model.as_dict(),
                    "score": entry["score"],
                    "reasons": entry["reasons"],
                }
            )
    return ranked


def _analysis(session, public_id: str, attempt: dict, ranked: list[dict]):
    """The AI section for a result; a paid attempt's job jumps ahead of free ones."""
    return ai_service.request_analysis(
        subject_id=public_id,
        prompt_inputs={"top_models": ranked[:3], "answers": dict(attempt["answers"])},
        user_key=user_key(session, request.remote_addr),
        paid=attempt["paid_at"] is not None,
    )


def result_page(session, public_id: str) -> dict:
    """The free result: what the owner sees (with email and unlock forms) and the share page shows."""
    attempt = load_attempt(public_id)
    ranked = ranked_models(attempt)
    analysis = _analysis(session, public_id, attempt, ranked)
    return {
        "attempt": attempt,
        "ranked": ranked,
        "top": ranked[0],
        "paid": attempt["paid_at"] is not None,
        "owner": access.owns(session, attempt),
        "analysis": analysis,
        "subject_id": public_id,
    }


def report_page(session, public_id: str, link_token: str | None) -> dict:
    """The paid full report for its buyer; otherwise what the locked page needs (offer or refusal)."""
    attempt = load_attempt(public_id)
    if not access.may_read_report(session, attempt, link_token):
        return {
            "locked": True,
            "attempt": attempt,
            "owner": access.owns(session, attempt),
            "subject_id": public_id,
        }
    quiz = content()
    answers = [(q, attempt["answers"].get(q.id)) for q in quiz.questions]
    ranked = ranked_models(attempt)
    return {
        "locked": False,
        "attempt": attempt,
        "ranked": ranked,
        "answers": answers,
        "owner": access.owns(session, attempt),
        "analysis": _analysis(session, public_id, attempt, ranked),
        "subject_id": public_id,
    }


def revoke_report_links(session, public_id: str) -> None:
    """The buyer ends every report link sent by mail (a lost phone, a forwarded mail)."""
    attempt = load_attempt(public_id)
    if attempt["paid_at"] is None or not access.owns(session, attempt):
        raise Forbidden("Only the buyer of this report can revoke its links.")
    db.run_in_transaction(repository.revoke_report_links, attempt["id"])
    log.info("quiz.report_links_revoked", extra={"attempt_id": attempt["id"]})
