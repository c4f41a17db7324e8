"""The waiting-room answer (page or JSON, 503 + Retry-After) and the admin's live capacity and pace."""

from __future__ import annotations

import time

from flask import Blueprint, current_app, jsonify, redirect, request, session, url_for

from ..errors import render_error, wants_json
from . import service
from .waiting_page import waiting_page

bp = Blueprint("admission", __name__, url_prefix="/admin/admission")


def waiting_room(answer: service.WaitingAnswer, *, kind: str = "wait"):
    """503 with Retry-After; a page that refreshes itself (no JavaScript) or its JSON form.

    `kind` is "wait" for the cluster's line, "busy" when this worker stayed full for the whole
    queue timeout (the same page; told apart in the logs and the bench)."""
    if wants_json():
        response = jsonify(
            status="waiting",
            position=answer.position,
            queue_length=answer.queue_length,
            estimated_wait_seconds=answer.estimated_wait_s,
            retry_after=answer.refresh_s,
            message="The quiz is very busy. Keep the cookie and retry after retry_after seconds.",
        )
    else:
        # A refresh repeats a GET; a refused form post comes back to the start page instead.
        target = same_url() if request.method == "GET" else "/"
        response = current_app.response_class(waiting_page(answer, refresh_url=target))
    response.status_code = 503
    headers = response.headers._list  # our own clean values: skip Headers' per-value checks
    headers.append(("Retry-After", str(answer.refresh_s)))
    headers.append(("Cache-Control", "no-store"))
    headers.append(("X-Admission", kind))  # nginx logs it: waiting-room 503s apart from failures
    return response


def same_url() -> str:
    """This request's path and query as a URL on this site: "//host/..." (or "/\\host") names
    another site to a browser, so leading slashes collapse to one."""
    return "/" + request.full_path.rstrip("?").lstrip("/\\")


# The pass goes to nginx in the handoff's URI (nginx/quizapp.conf.template, location /@pool/):
# a signed "p.<ticket>.<expiry>.<signature>" is letters, digits, dots, "-" and "_" only.
HANDOFF_PREFIX = "/@pool/"


def on_to_the_pool(pass_cookie: str):
    """The door admitted a visitor who keeps our cookie; the pool renders the page, so the door
    only ever answers with its one Redis call, never behind a page render.

    A GET or HEAD is handed over inside nginx (X-Accel-Redirect to its internal /@pool/ location,
    which proxies the original request URI to the pool with the pass put first in the Cookie
    header): no second round trip for the visitor. nginx keeps this answer's Set-Cookie (the pass)
    on the page it sends. Anything else gets a 307 to the same URL (a form post is sent again as
    it was), whose repeat carries the pass, so nginx routes it to the pool."""
    handoff = request.method in ("GET", "HEAD")  # nginx turns an X-Accel-Redirect into a GET
    response = current_app.response_class(status=200 if handoff else 307)
    headers = response.headers._list
    if handoff:
        headers.append(("X-Accel-Redirect", HANDOFF_PREFIX + pass_cookie))
    else:
        headers.append(("Location", same_url()))
    headers.append(("Cache-Control", "no-store"))
    # nginx's log tells a 307 apart from pages; a handoff's line is the pool's page, "up=door : pool"
    headers.append(("X-Admission", "admit"))
    return response


def too_many_arrivals():
    """429 before any ticket or slot: this address started more new visits this minute than a
    classroom would (a client dropping its cookie on every request lands here)."""
    retry_after = 60 - int(time.time()) % 60
    response = render_error(
        429,
        "Slow down a little",
        "Many new visits came from your network in the last minute. "
        f"Please wait about {retry_after} seconds and try again; keep cookies on to keep your place.",
        retry_after,
    )
    response.headers["X-Admission"] = "refused"
    return response


@bp.post("/capacity")
def change_capacity():
    actor = session.get("admin_user") or "admin"
    service.set_capacity(request.form.get("capacity"), actor=actor, remote_addr=request.remote_addr)
    return redirect(url_for("admin.health", done="admission_capacity"))


@bp.post("/pace")
def change_pace():
    actor = session.get("admin_user") or "admin"
    service.set_pace(request.form.get("pace"), actor=actor, remote_addr=request.remote_addr)
    return redirect(url_for("admin.health", done="admission_pace"))
