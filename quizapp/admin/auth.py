"""Admin authentication: password check, session regeneration, idle timeout, audit, the guard."""

from __future__ import annotations

import functools
import logging
import time

from flask import current_app, redirect, request, session, url_for

from ..db import transaction
from ..errors import Forbidden, QuizError, wants_json
from .password_check import check_password_off_loop, take_global_login_slot
from .repository import insert_audit

log = logging.getLogger(__name__)

ADMIN_ACTOR = "admin"
_ADMIN_KEYS = ("admin", "admin_seen")
ADMIN_PREFIXES = ("/admin", "/api/admin")
_ADMIN_SUBPATHS = tuple(p + "/" for p in ADMIN_PREFIXES)


class AdminLoginDisabled(QuizError):
    status = 403
    title = "Admin login is disabled"
    message = (
        "No admin password is configured. Set ADMIN_PASSWORD_HASH "
        "(make one with `python -m quizapp.admin.hash_password`) and restart."
    )


def login_enabled() -> bool:
    return bool(current_app.config.get("ADMIN_PASSWORD_HASH"))


def _idle_seconds() -> int:
    return current_app.config["ADMIN_IDLE_MINUTES"] * 60


def is_admin() -> bool:
    """An admin session that has been active within ADMIN_IDLE_MINUTES."""
    if not session.get("admin"):
        return False
    return time.time() - float(session.get("admin_seen", 0)) <= _idle_seconds()


def _record(action: str, detail: dict) -> None:
    with transaction() as cur:
        insert_audit(cur, actor=ADMIN_ACTOR, action=action, detail=detail)


def log_in(password: str) -> bool:
    """Check the password (constant time), audit the attempt, and on success start a fresh session."""
    pw_hash = current_app.config.get("ADMIN_PASSWORD_HASH")
    if not pw_hash:
        raise AdminLoginDisabled()
    app = current_app._get_current_object()
    take_global_login_slot(app)
    ok = check_password_off_loop(app, pw_hash, password)
    detail = {"ip": request.remote_addr}
    _record("admin.login" if ok else "admin.login_failed", detail)
    if not ok:
        log.warning("admin.login_failed", extra={"ip": request.remote_addr})
        return False
    session["admin"] = True
    session["admin_seen"] = time.time()
    # A new session id on privilege change defeats session fixation.
    current_app.session_interface.regenerate(session)
    log.info("admin.login", extra={"ip": request.remote_addr})
    return True


def log_out() -> None:
    was_admin = bool(session.get("admin"))
    for key in _ADMIN_KEYS:
        session.pop(key, None)
    if was_admin:
        _record("admin.logout", {"ip": request.remote_addr})
        current_app.session_interface.regenerate(session)
        log.info("admin.logout", extra={"ip": request.remote_addr})


def _refuse():
    """Pages redirect to the login form; the JSON admin API answers 403."""
    if session.get("admin"):  # present but idle too long
        for key in _ADMIN_KEYS:
            session.pop(key, None)
        log.info("admin.idle_timeout")
    if wants_json():
        raise Forbidden("Admin login required.")
    return redirect(url_for("admin_auth.login", next=request.full_path.rstrip("?")))


AUTO_REFRESH = "auto"  # ?refresh=auto: a page reloading itself, not the admin acting


def _touch() -> None:
    """Only the admin's own requests keep the session alive, not a page's automatic reload."""
    if request.args.get("refresh") == AUTO_REFRESH:
        return
    session["admin_seen"] = time.time()


def admin_required(view):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if not is_admin():
            return _refuse()
        _touch()
        return view(*args, **kwargs)

    return wrapper


def guard_admin_paths():
    """Belt and braces: every /admin and /api/admin route needs an admin, decorated or not."""
    path = request.path
    if path not in ADMIN_PREFIXES and not path.startswith(_ADMIN_SUBPATHS):
        return None
    if request.endpoint and request.endpoint.startswith("admin_auth."):
        return None
    if request.endpoint is None:  # unknown URL: let the 404 page answer
        return None
    if not is_admin():
        return _refuse()
    _touch()
    return None
