"""The bench's no-I/O twin renders every page of the quiz walk, at the real pages' sizes."""

from bench.twin_app import CONTENT
from bench.twin_app import app as twin
from devstack.forms import csrf_token


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
