"""The bench's no-I/O twin renders every page of the quiz walk, at the real pages' sizes, with the
real answers' headers and cookies."""

from bench.twin_app import CONTENT
from bench.twin_app import app as twin
from devstack.forms import csrf_token

REQUEST_ID = {"X-Request-ID": "0123456789abcdef0123456789abcdef"}


def _header_bytes(response) -> int:
    return sum(len(name) + len(value) + 4 for name, value in response.headers.items())


def _cookies(response) -> list[str]:
    return sorted(value.split("=", 1)[0] for value in response.headers.getlist("Set-Cookie"))


def test_twin_serves_the_walk_at_the_real_sizes(make_app):
    real = make_app(RATELIMIT_ENABLED="false", ADMISSION_ENABLED="false").test_client()
    landing = real.get("/")
    real.post("/start", data={"csrf_token": csrf_token(landing)})
    first = CONTENT.questions[0].id
    real_sizes = {"/": len(landing.data), f"/q/{first}": len(real.get(f"/q/{first}").data)}
    client = twin.test_client()
    for path in ["/", f"/q/{first}", "/review", "/r/abcdefghijklmnop", "/favicon.ico", "/healthz"]:
        answer = client.get(path)
        assert answer.status_code == 200 and answer.headers["X-Quizapp-Route"] != "-", path
    for path, size in real_sizes.items():
        twin_size = len(client.get(path).data)
        assert abs(twin_size - size) <= 0.15 * size, (path, twin_size, size)


def test_twin_answers_with_the_real_headers_and_cookies(make_app):
    """A first landing, the start and a question: the same header names, the same cookies set, and
    header blocks within 10 % of the app's bytes (the app with admission on: its pass cookie)."""
    real = make_app(RATELIMIT_ENABLED="false").test_client()
    client = twin.test_client()
    first = CONTENT.questions[0].id
    steps = []
    for app_client in (real, client):
        landing = app_client.get("/", headers=REQUEST_ID)
        start = app_client.post("/start", data={"csrf_token": csrf_token(landing)}, headers=REQUEST_ID)
        question = app_client.get(f"/q/{first}", headers=REQUEST_ID)
        again = app_client.get("/", headers=REQUEST_ID)  # a pass held: no new cookies
        steps.append((landing, start, question, again))
    for name, app_answer, twin_answer in zip(("landing", "start", "question", "again"), *steps, strict=True):
        assert twin_answer.status_code == app_answer.status_code, name
        assert _cookies(twin_answer) == _cookies(app_answer), name
        assert sorted(twin_answer.headers.keys()) == sorted(app_answer.headers.keys()), name
        app_bytes, twin_bytes = _header_bytes(app_answer), _header_bytes(twin_answer)
        assert abs(twin_bytes - app_bytes) <= 0.1 * app_bytes, (name, twin_bytes, app_bytes)
    assert steps[1][0].headers["X-Request-ID"] == REQUEST_ID["X-Request-ID"]
