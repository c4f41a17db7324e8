"""The no-I/O twin: the app's pages at the same sizes (real templates and content), no Redis,
Postgres, limits or admission. Behind the same nginx and locust scenario, its knee is the limit
of this box with this load generator.

Stateless: every page is rendered as if each question had been answered with its first choice, and
a posted answer leads to the question after it. (A state cookie would not do: locust follows a
303 before it stores the cookie the 303 set.)
"""

from gevent import monkey

monkey.patch_all()

import secrets  # noqa: E402

from flask import Blueprint, Flask, flash, jsonify, redirect, render_template, request, url_for  # noqa: E402

from quizapp.ai.prompts import algorithmic_analysis  # noqa: E402
from quizapp.ai.service import AnalysisStatus  # noqa: E402
from quizapp.config import ROOT  # noqa: E402
from quizapp.pages.views import bp as pages  # noqa: E402  the real favicon, legal pages, operator globals
from quizapp.quiz import service  # noqa: E402
from quizapp.quiz.data import load_content  # noqa: E402
from quizapp.quiz.pages import model_card  # noqa: E402  the result page's model cards, as the app
from quizapp.quiz.scoring import score_answers  # noqa: E402
from quizapp.security.edge import ROUTE_HEADER, route_pattern  # noqa: E402

app = Flask("quizapp", root_path=str(ROOT / "quizapp"))  # the real templates/ and static/
app.secret_key = secrets.token_hex(32)  # flash() on the email form only
CONTENT = load_content(str(ROOT / "quizapp" / "quiz" / "content.yaml"))
app.extensions["quiz_content"] = CONTENT
app.add_template_global(model_card)
ANSWERS = {q.id: 0 for q in CONTENT.questions}
# As long as a real Flask-WTF token (one per session), so every page weighs the same.
CSRF_TOKEN = secrets.token_urlsafe(66)[:91]

quiz = Blueprint("quiz", __name__)
payments = Blueprint("payments", __name__, url_prefix="/pay")
ai = Blueprint("ai", __name__)
health = Blueprint("health", __name__)


@app.context_processor
def _globals():
    return {"csrf_token": lambda: CSRF_TOKEN, "price_cents": 900}


@quiz.get("/")
def landing():
    return render_template(
        "quiz/landing.html", total=len(CONTENT.questions), resume_id=None, answered=0, result_id=None
    )


@quiz.post("/start")
def start():
    return redirect(url_for("quiz.question", question_id=CONTENT.questions[0].id), 303)


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
    return render_template("quiz/result.html", **_result(public_id), email_error=None)


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
def _route_for_the_log(response):
    """The access log's route pattern, as the real app sends it (the bench reads page latency from it)."""
    response.headers[ROUTE_HEADER] = route_pattern()
    return response


for blueprint in (quiz, payments, ai, health, pages):
    app.register_blueprint(blueprint)
