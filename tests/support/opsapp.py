"""The real app plus test-only routes for the topology tests: an admin login and a POST echo."""

import time

from flask import request, session

import wsgi
from quizapp.extensions import csrf

app = wsgi.app


@app.get("/_test/admin-login")
def test_admin_login():
    session["admin"] = True
    session["admin_seen"] = time.time()
    session["admin_user"] = "test-admin"
    return {"admin": True}


@app.post("/_test/echo")
@csrf.exempt
def test_echo():
    return {"echo": request.get_data(as_text=True)}
