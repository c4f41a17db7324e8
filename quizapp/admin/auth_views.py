"""Blueprint admin_auth: the admin login form and logout."""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, request

from .. import validation
from . import auth, password_check

bp = Blueprint("admin_auth", __name__)


def _safe_next(target: str | None) -> str:
    """Only same-site paths: '/x' yes, '//evil' or 'https://evil' no."""
    # Browsers drop tabs/newlines and read "\\" as "/", so "/\t/evil" would become "//evil".
    if (
        target
        and target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and target.isprintable()
        and " " not in target
    ):
        return target
    return "/admin/"


@bp.before_request
def _refuse_logins_when_busy():
    # Cheap and early: a guess storm beyond the hash bound costs no limiter round trips either.
    if request.method == "POST" and request.endpoint == "admin_auth.login":
        password_check.refuse_when_busy(current_app._get_current_object())


@bp.route("/admin/login", methods=["GET", "POST"])
def login():
    next_url = _safe_next(request.values.get("next"))
    if not auth.login_enabled():
        return render_template("admin/login.html", disabled=True, next_url=next_url), 403
    if request.method == "GET":
        return render_template("admin/login.html", next_url=next_url)
    if auth.log_in(validation.password(request.form.get("password", ""))):
        return redirect(next_url)
    return render_template("admin/login.html", failed=True, next_url=next_url), 401


@bp.post("/admin/logout")
def logout():
    auth.log_out()
    return redirect("/admin/login")
