"""The door through real nginx and gunicorn: visitors without a pass reach the door instance,
pass holders and infrastructure paths the pool, and with the door stopped the pool answers all."""

import os
import re
import uuid
from pathlib import Path

import pytest
import requests

from devstack.processes import wait_for
from devstack.stack import DOOR_NICE, Stack
from quizapp.admission.repository import STATE_KEY

pytestmark = [pytest.mark.integration, pytest.mark.slow]
JSON = {"Accept": "application/json"}
CRITICAL = [
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/api/health/detailed"),
    ("GET", "/admin/login"),
    ("GET", "/api/admin/health"),
    ("POST", "/pay/webhook"),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory, migrated_database):
    env = {
        "ADMISSION_CAPACITY": "1000",
        "ADMISSION_PACE_PER_SECOND": "off",  # the capacity rule alone
        "CSRF_ENABLED": "false",
        "TRUSTED_PROXY_HOPS": "1",
    }
    with Stack(
        tmp_path_factory.mktemp("door"), instances=1, env=env, socket_activated=False, door=True
    ) as running:
        yield running


def _served_by(stack, session, method="GET", path="/", headers=None):
    """(response, "door" | "pool" | "nginx"): who answered, from nginx's access log (up=...)."""
    rid = uuid.uuid4().hex
    response = session.request(
        method,
        stack.url + path,
        headers={"X-Request-ID": rid, **(headers or {})},
        timeout=60,
        allow_redirects=False,
    )
    line = wait_for(
        lambda: next((x for x in stack.nginx.access_log().splitlines() if f"rid={rid} " in x), None),
        timeout=30,
        what=f"the access line of {method} {path}",
    )
    # "door, pool" after a failover; "door : pool" after the door's handoff (an internal redirect)
    tried = re.search(r" up=(.*) adm=", line).group(1)
    names = {
        f"127.0.0.1:{stack.door.port}": "door",
        f"127.0.0.1:{stack.instances[0].port}": "pool",
        "-": "nginx",
    }
    return response, " ".join(names.get(u, u) for u in re.split(r", | : ", tried))


def _admission_cookie(response) -> str:
    """The qa.adm value exactly as it went over the wire (nginx matches the raw Cookie header)."""
    found = re.search(r"qa\.adm=([^;]*)", response.headers.get("Set-Cookie", ""))
    return found.group(1) if found else ""


def test_newcomers_meet_the_door_and_pass_holders_the_pool(stack):
    visitor = requests.Session()
    first, who = _served_by(stack, visitor)
    assert (first.status_code, who) == (200, "door")
    assert re.fullmatch(r"p\.\d+\.\d+\.[\w-]+", _admission_cookie(first))  # unquoted, as nginx's map expects
    again, who = _served_by(stack, visitor)
    assert (again.status_code, who) == (200, "pool")
    started, who = _served_by(stack, visitor, "POST", "/start")
    assert (started.status_code, who) == (303, "pool")
    assert _admission_cookie(started).startswith("s.")
    question, who = _served_by(stack, visitor, "GET", started.headers["Location"])
    assert (question.status_code, who) == (200, "pool")


def test_a_waiting_ticket_is_answered_by_the_door(stack, redis_client):
    redis_client.hset(STATE_KEY, "capacity", 1)
    admitted, who = _served_by(stack, requests.Session())
    assert (admitted.status_code, who) == (200, "door")
    waiting = requests.Session()
    for _ in range(2):  # the first answer hands out the ticket, the refresh carries it
        answer, who = _served_by(stack, waiting, headers=JSON)
        assert (answer.status_code, who) == (503, "door")
        assert answer.json()["position"] == 1 and "Retry-After" in answer.headers
        assert waiting.cookies["qa.adm"].startswith("w.")


def _wait_then_admit(stack, redis_client) -> requests.Session:
    """A visitor holding a waiting ticket when the capacity is raised: the next request admits."""
    redis_client.hset(STATE_KEY, "capacity", 1)
    _served_by(stack, requests.Session())  # takes the one slot (a cookieless first page: the door's)
    visitor = requests.Session()
    assert _served_by(stack, visitor)[0].status_code == 503
    assert visitor.cookies["qa.adm"].startswith("w.")
    redis_client.hset(STATE_KEY, "capacity", 1000)
    return visitor


def test_an_admitted_page_view_is_handed_to_the_pool_inside_nginx(stack, redis_client):
    visitor = _wait_then_admit(stack, redis_client)
    page, who = _served_by(stack, visitor, "GET", "/?utm_source=class%20room&x=1")
    # One round trip: the door admitted, the pool rendered the page, with the pass as its cookie.
    assert (page.status_code, who, page.history) == (200, "door pool", [])
    assert "X-Accel-Redirect" not in page.headers and "X-Admission" not in page.headers
    assert "<form" in page.text and 'action="/start"' in page.text
    assert _admission_cookie(page).startswith("p.")  # the door's Set-Cookie, kept by nginx
    # The pool read the pass (first in the Cookie header, before the visitor's waiting ticket):
    # it neither asked the cluster again nor set a cookie of its own.
    assert page.headers["Set-Cookie"].count("qa.adm=") == 1
    assert "bizmodel.csrf=" in page.headers["Set-Cookie"]  # the pool's own, beside it
    again, who = _served_by(stack, visitor)  # the pass routes the next page to the pool alone
    assert (again.status_code, who) == (200, "pool")


def test_the_handoff_location_is_internal(stack):
    pass_value = "p.1.9999999999.forged"
    response = requests.get(f"{stack.url}/@pool/{pass_value}", timeout=30, allow_redirects=False)
    assert response.status_code == 404


def test_an_admitted_form_post_is_sent_on_to_the_pool_which_renders_the_page(stack, redis_client):
    visitor = _wait_then_admit(stack, redis_client)
    sent_on, who = _served_by(stack, visitor, "POST", "/start")
    assert (sent_on.status_code, sent_on.headers["Location"], who) == (307, "/start", "door")
    assert _admission_cookie(sent_on).startswith("p.")
    started, who = _served_by(stack, visitor, "POST", sent_on.headers["Location"])  # as a browser repeats it
    assert (started.status_code, who) == (303, "pool")
    assert _admission_cookie(started).startswith("s.")


def _session_nice(pid: int) -> str:
    return Path(f"/proc/{pid}/autogroup").read_text().split()[-1]  # "/autogroup-123 nice -5"


@pytest.mark.skipif(
    not Path("/proc/self/autogroup").exists() or os.geteuid() != 0,
    reason="no session autogroups here, or no privilege to rank one below 0",
)
def test_the_door_is_ranked_ahead_across_sessions(stack):
    # Each instance runs in a session of its own: nice(1) alone would rank the door only against
    # its own master. Its session's autogroup carries the niceness instead (rank_session).
    assert _session_nice(stack.door.proc.pid) == str(DOOR_NICE)
    assert _session_nice(stack.instances[0].proc.pid) == "0"


def test_infrastructure_and_operator_paths_never_go_through_the_door(stack):
    for method, path in CRITICAL:
        _, who = _served_by(stack, requests.Session(), method, path)
        assert who == "pool", (method, path)


def test_with_the_door_stopped_the_pool_answers_everyone(stack):
    stack.door.stop()
    try:
        for _ in range(3):
            visitor = requests.Session()
            first, who = _served_by(stack, visitor)
            assert first.status_code == 200 and who.endswith("pool"), who
            again, who = _served_by(stack, visitor)
            assert (again.status_code, who) == (200, "pool")
    finally:
        stack.door.start()
    # Back in nginx's rotation once its fail_timeout (2 s) has passed.
    wait_for(lambda: _served_by(stack, requests.Session())[1] == "door", timeout=60, what="the door back")
