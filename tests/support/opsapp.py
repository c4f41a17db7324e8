"""The real app plus test-only routes for the topology tests: an admin login and a POST echo."""

from flask import request, session

import wsgi
from quizapp.extensions import csrf
from tests.support.admin_session import admin_session_fields

app = wsgi.app


@app.get("/_test/admin-login")
def test_admin_login():
    session.update(admin_session_fields(user="test-admin"))
    return {"admin": True}


@app.post("/_test/echo")
@csrf.exempt
def test_echo():
    return {"echo": request.get_data(as_text=True)}
