"""Quiz pages: landing, one question a page, review and submit, results, email, full report."""

from __future__ import annotations

from flask import (
    Blueprint,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from .. import admission, validation
from ..errors import BadRequest
from ..links import template_url_for as fixed_url
from ..mail import service as mail_service
from . import service
from .data import load_content
from .pages import cached_page, model_card

bp = Blueprint("quiz", __name__)


@bp.record_once
def _load_content(state):
    # A broken content file stops start-up here with a ConfigError naming file and field.
    app = state.app
    app.extensions["quiz_content"] = load_content(app.config["QUIZ_CONTENT_PATH"])


@bp.get("/")
def landing():
    return render_template(
        "quiz/landing.html",
        total=len(service.content().questions),
        resume_id=service.next_unanswered(session) if service.in_progress(session) else None,
        answered=len(service.answers_of(session)),
        result_id=service.result_id_of(session),
    )


@bp.post("/start")
def start():
    first = service.start_quiz(session)
    return redirect(url_for("quiz.question", question_id=first), 303)


@bp.route("/q/<question_id:question_id>", methods=["GET", "POST"])
def question(question_id):
    req, current = request._get_current_object(), session._get_current_object()  # the hot path
    if req.method == "GET":
        try:
            page = service.question_page(current, question_id)
        except service.InvalidAnswer as exc:
            return _question_error(exc, fallback=True)
        key = (question_id, page.selected)  # all the page shows besides the static content
        return cached_page("quiz/question.html", key, page=page, error=None)
    try:
        following = service.record_answer(current, question_id, req.form, req.content_length)
    except service.InvalidAnswer as exc:
        return _question_error(exc, question_id=question_id)
    if following is None:
        return redirect(fixed_url("quiz.review"), 303)
    return redirect(_question_url(following, req.script_root), 303)


QUESTION_URLS_KEY = "quiz.question_urls"
QUESTION_URLS_MAX = 1024  # the content's questions, for the few script roots a deployment has


def _question_url(question_id: str, script_root: str) -> str:
    """url_for("quiz.question", question_id=...), built once per worker for each question of the
    content (the answer POST's redirect: werkzeug's URL builder is ~30 calls a link)."""
    cache = current_app.extensions.setdefault(QUESTION_URLS_KEY, {})
    url = cache.get((script_root, question_id))
    if url is None:
        url = url_for("quiz.question", question_id=question_id)
        if len(cache) < QUESTION_URLS_MAX:
            cache[(script_root, question_id)] = url
    return url


def _question_error(exc, question_id=None, fallback=False):
    """Re-render a question page with the message and its status (400, 404 for an unknown id)."""
    target = None if fallback else question_id
    if target is None or service.content().question(target) is None:
        target = service.next_unanswered(session) or service.content().questions[0].id
    page = service.question_page(session, target)
    return render_template("quiz/question.html", page=page, error=exc.message), exc.status


@bp.get("/review")
def review():
    return render_template("quiz/review.html", items=service.review(session), error=None)


@bp.post("/submit")
def submit():
    try:
        public_id = service.submit(session, request.remote_addr)
    except service.InvalidAnswer as exc:
        items = service.review(session)
        return render_template("quiz/review.html", items=items, error=exc.message), 400
    admission.end_visit()  # the visit's work is done: the next visitor in line may come in
    return redirect(url_for("quiz.result", public_id=public_id), 303)


def private_page(body, status=200):
    """Pages for one visitor (or their buyer link) are never kept by browsers or shared caches."""
    response = make_response(body, status)
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.get("/r/<public_id:public_id>")
def result(public_id):
    page = service.result_page(session, public_id)
    return private_page(render_template("quiz/result.html", **page, email_error=None))


@bp.post("/r/<public_id:public_id>/email")
def email(public_id):
    try:
        mail_service.capture_email(session, public_id, validation.email(request.form.get("email", "")))
    except BadRequest as exc:
        page = service.result_page(session, public_id)
        return private_page(render_template("quiz/result.html", **page, email_error=exc.message), 400)
    flash(
        "Thanks: we have sent a confirmation link to that address. Your result follows once you confirm.",
        "ok",
    )
    return redirect(url_for("quiz.result", public_id=public_id, _anchor="email"), 303)


@bp.get("/r/<public_id:public_id>/report")
def report(public_id):
    page = service.report_page(session, public_id, request.args.get("key"))
    if page["locked"]:
        return private_page(render_template("quiz/report_locked.html", **page), 403)
    return private_page(render_template("quiz/report.html", **page, link_key=request.args.get("key")))


@bp.post("/r/<public_id:public_id>/report/revoke-links")
def revoke_links(public_id):
    service.revoke_report_links(session, public_id)
    flash("Done: the report links we emailed no longer open this report. This browser still can.", "ok")
    return redirect(url_for("quiz.report", public_id=public_id), 303)


bp.add_app_template_global(model_card)


@bp.app_context_processor
def _quiz_globals():
    return {"price_cents": current_app.config["STRIPE_PRICE_CENTS"]}
