"""Admin authentication guard shared by every /admin page and admin API."""

from __future__ import annotations

import functools

from flask import redirect, request, session, url_for

from ..errors import Forbidden, wants_json


def is_admin() -> bool:
    return bool(session.get("admin"))


def admin_required(view):
    """Pages redirect to the login form; the JSON admin API answers 403."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if not is_admin():
            if wants_json():
                raise Forbidden("Admin login required.")
            return redirect(url_for("admin_auth.login", next=request.full_path))
        return view(*args, **kwargs)

    return wrapper
