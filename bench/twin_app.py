"""The no-I/O twin: the app's pages at the same sizes (real templates and content), no Redis,
Postgres, limits or admission. Behind the same nginx and locust scenario, its knee is the limit
of this box with this load generator.

Stateless: every page is rendered as if each question had been answered with its first choice, and
a posted answer leads to the question after it. (A state cookie would not do: locust follows a
303 before it stores the cookie the 303 set.)

The same responses on the wire, too: the app's security headers, request id and Vary, and its
cookies where the app sets them (the admission pass and the CSRF cookie on a first landing, the
started pass and the session id at /start), at the app's sizes and attributes. The twin never reads
them back. Headers are a fifth of a question page's bytes, and a cookie costs the client its parse
and then a Cookie header on every request: the yardstick pays for them as the app does.
"""

from gevent import monkey

monkey.patch_all()

import secrets  # noqa: E402
import time  # noqa: E402

from flask import Blueprint, Flask, flash, jsonify, redirect, render_template, request, url_for  # noqa: E402

from quizapp.ai.prompts import algorithmic_analysis  # noqa: E402
from quizapp.ai.service import AnalysisStatus  # noqa: E402
from quizapp.config import ROOT  # noqa: E402
from quizapp.pages.views import bp as pages  # noqa: E402  the real favicon, legal pages, operator globals
from quizapp.quiz import service  # noqa: E402
from quizapp.quiz.data import load_content  # noqa: E402
from quizapp.quiz.pages import model_card  # noqa: E402  the result page's model cards, as the app
from quizapp.quiz.scoring import score_answers  # noqa: E402
from quizapp.security.edge import ROUTE_HEADER, content_security_policy, route_pattern  # noqa: E402

app = Flask("quizapp", root_path=str(ROOT / "quizapp"))  # the real templates/ and static/
app.secret_key = secrets.token_hex(32)  # flash() on the email form only
CONTENT = load_content(str(ROOT / "quizapp" / "quiz" / "content.yaml"))
app.extensions["quiz_content"] = CONTENT
app.add_template_global(model_card)
ANSWERS = {q.id: 0 for q in CONTENT.questions}
# As long as a real Flask-WTF token (one per session), so every page weighs the same.
CSRF_TOKEN = secrets.token_urlsafe(66)[:91]
# The app's response headers (quizapp/security/edge.py) and cookies, at their sizes.
SECURITY_HEADERS = [
    ("Content-Security-Policy", content_security_policy({"PAYMENT_PROVIDER": "test"})),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
    ("X-Frame-Options", "DENY"),
]
PASS_COOKIE, CSRF_COOKIE, SESSION_COOKIE = "qa.adm", "bizmodel.csrf", "bizmodel.sid"
PASS_SECONDS, CSRF_SECONDS, SESSION_SECONDS = 1800, 86400, 86400


def _pass_value(kind: str) -> str:
    """A pass's shape: kind.ticket.expiry.signature (quizapp/admission/service.py)."""
    return f"{kind}.{secrets.randbelow(10**6)}.{int(time.time()) + PASS_SECONDS}.{secrets.token_urlsafe(32)}"


quiz = Blueprint("quiz", __name__)
payments = Blueprint("payments", __name__, url_prefix="/pay")
ai = Blueprint("ai", __name__)
health = Blueprint("health", __name__)


@app.context_processor
def _globals():
    return {"csrf_token": lambda: CSRF_TOKEN, "price_cents": 900}


@quiz.get("/")
def landing():
    response = app.make_response(
        render_template(
            "quiz/landing.html", total=len(CONTENT.questions), resume_id=None, answered=0, result_id=None
        )
    )
    if PASS_COOKIE not in request.cookies:  # a first landing: the door's pass, the CSRF cookie
        _set_cookie(response, PASS_COOKIE, _pass_value("p"), PASS_SECONDS)
        _set_cookie(response, CSRF_COOKIE, secrets.token_urlsafe(16), CSRF_SECONDS)
    return response


@quiz.post("/start")
def start():
    response = redirect(url_for("quiz.question", question_id=CONTENT.questions[0].id), 303)
    _set_cookie(response, PASS_COOKIE, _pass_value("s"), PASS_SECONDS)
    response.vary.add("Cookie")
    # The session id: Flask-Session's cookie (an Expires, no Max-Age).
    response.set_cookie(
        SESSION_COOKIE,
        secrets.token_urlsafe(24),
        expires=time.time() + SESSION_SECONDS,
        httponly=True,
        samesite="Lax",
    )
    return response


def _set_cookie(response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="Lax")


@quiz.route("/q/<question_id>", methods=["GET", "POST"])
def question(question_id):
    index = CONTENT.index_of(question_id)
    if request.method == "GET":
        page = service.QuestionPage(
            question=CONTENT.questions[index],
            number=index + 1,
            total=len(CONTENT.questions),
            previous_id=CONTENT.questions[index - 1].id if index else None,
            selected=None,
        )
        return render_template("quiz/question.html", page=page, error=None)
    if index + 1 >= len(CONTENT.questions):
        return redirect(url_for("quiz.review"), 303)
    return redirect(url_for("quiz.question", question_id=CONTENT.questions[index + 1].id), 303)


@quiz.get("/review")
def review():
    items = [(q, ANSWERS[q.id]) for q in CONTENT.questions]
    return render_template("quiz/review.html", items=items, error=None)


@quiz.post("/submit")
def submit():
    public_id = secrets.token_urlsafe(service.PUBLIC_ID_BYTES)
    return redirect(url_for("quiz.result", public_id=public_id), 303)


def _result(public_id):
    scores = [s.as_dict() for s in score_answers(CONTENT, ANSWERS)]
    ranked = service.ranked_models({"scores": scores})
    text = algorithmic_analysis({"top_models": ranked[:3], "answers": ANSWERS})
    analysis = AnalysisStatus(state="fallback", text=text, fallback=True)
    return {"ranked": ranked, "top": ranked[0], "paid": False, "analysis": analysis, "subject_id": public_id}


@quiz.get("/r/<public_id>")
def result(public_id):
    response = app.make_response(render_template("quiz/result.html", **_result(public_id), email_error=None))
    response.headers["Cache-Control"] = "private, no-store"
    return response


@quiz.post("/r/<public_id>/email")
def email(public_id):
    flash("Thanks: we will email you your result.", "ok")
    return redirect(url_for("quiz.result", public_id=public_id, _anchor="email"), 303)


@quiz.get("/r/<public_id>/report")
def report(public_id):
    return redirect(url_for("quiz.result", public_id=public_id), 303)


@payments.post("/checkout")
def checkout():
    return redirect(url_for("quiz.result", public_id=request.form.get("public_id", "x")), 303)


@ai.get("/api/analysis/<subject_id>")
def analysis_json(subject_id):
    return jsonify(AnalysisStatus(state="fallback", text="", fallback=True).as_dict())


@health.get("/healthz")
def healthz():
    return jsonify(status="ok")


@health.get("/api/health/detailed")
def detailed():
    return jsonify(status="healthy", score=100, workers=[])


@app.after_request
def _as_the_app_sends(response):
    """The app's headers on every answer: security headers, the request id nginx sent, the route
    pattern for the access log (the bench reads page latency from it), Vary once a session exists."""
    response.headers.extend(SECURITY_HEADERS)
    request_id = request.headers.get("X-Request-ID")
    if request_id:
        response.headers["X-Request-ID"] = request_id
    response.headers[ROUTE_HEADER] = route_pattern()
    if SESSION_COOKIE in request.cookies:  # the app reads the session: Vary: Cookie
        response.vary.add("Cookie")
    return response


for blueprint in (quiz, payments, ai, health, pages):
    app.register_blueprint(blueprint)
