"""The real app plus cheap probe routes for the edge-protection tests (gunicorn and nginx)."""

from flask import Blueprint, request

import wsgi
from quizapp import security
from quizapp.extensions import csrf

app = wsgi.app
probe = Blueprint("security_probe", __name__)


@probe.post("/_test/submit")
def submit():
    return {"ok": True}


@probe.get("/_test/whoami")
def whoami():
    return {"remote_addr": request.remote_addr, "scheme": request.scheme}


csrf.exempt(submit)  # the probe measures rate limits, not CSRF
app.register_blueprint(probe)
# Limited exactly like quiz.submit, through the same function init_app uses.
security.limit_endpoint(app, "security_probe.submit", app.config["RATELIMIT_SUBMIT"])
