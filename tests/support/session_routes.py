"""Two probe routes that write and read one session value: the session tests' and the Redis crash test's."""

from __future__ import annotations

from flask import session


def add_session_routes(app) -> None:
    """POST /_t/remember stores answers {"q1": 2}; GET /_t/recall returns them."""

    @app.post("/_t/remember")
    def remember():
        session["answers"] = {"q1": 2}
        return "ok"

    @app.get("/_t/recall")
    def recall():
        return {"answers": session.get("answers")}
