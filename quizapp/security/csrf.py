"""CSRF protection by signed double-submit: a random nonce in a cookie, its HMAC in the form.

No server session is needed, so a visitor who only looks at the landing page stores nothing, and
/start is protected all the same. A forged POST from another site carries neither the cookie
(SameSite=Lax) nor a token for it, and a token cannot be made without SECRET_KEY. One HMAC per
rendered form and one per checked POST: no itsdangerous timestamps, no session write.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import secrets

from flask import Blueprint, current_app, g, request
from flask_wtf.csrf import CSRFError

COOKIE_NAME = "bizmodel.csrf"
FORM_FIELD = "csrf_token"
HEADERS = ("X-CSRFToken", "X-CSRF-Token")
SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS", "TRACE"))
_NONCE = re.compile(r"^[A-Za-z0-9_-]{22}$")


@functools.lru_cache(maxsize=8192)  # a returning visitor's nonce is signed once per worker
def _signature(key: bytes, nonce: str) -> str:
    digest = hmac.new(key, nonce.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


class DoubleSubmitCSRF:
    """The CSRF extension: csrf_token() for templates, protect() and set_cookie() for the pipeline."""

    def __init__(self):
        self._exempt_views: set[str] = set()
        self._exempt_blueprints: set[str] = set()

    def init_app(self, app) -> None:
        app.extensions["csrf"] = self
        app.jinja_env.globals["csrf_token"] = self.token
        key = app.config["SECRET_KEY"].encode()
        app.extensions["csrf_key"] = hashlib.sha256(b"quizapp.csrf:" + key).digest()

    def exempt(self, view):
        """Skip the check for a view (or a whole blueprint); usable as a decorator."""
        if isinstance(view, Blueprint):
            self._exempt_blueprints.add(view.name)
        elif isinstance(view, str):
            self._exempt_views.add(view)
        else:
            self._exempt_views.add(f"{view.__module__}.{view.__name__}")
        return view

    @staticmethod
    def _sign(nonce: str) -> str:
        return _signature(current_app.extensions["csrf_key"], nonce)

    def token(self) -> str:
        """The form token for this visitor (one HMAC per request; a new nonce if they have none)."""
        state = g._get_current_object()
        cached = state.get("csrf_form_token")
        if cached is not None:
            return cached
        nonce = request.cookies.get(COOKIE_NAME, "")
        if not _NONCE.match(nonce):
            nonce = secrets.token_urlsafe(16)
            state.csrf_new_nonce = nonce  # set_cookie sends it with the response
        token = state.csrf_form_token = _signature(current_app.extensions["csrf_key"], nonce)
        return token

    def _is_exempt(self, req) -> bool:
        if req.blueprint in self._exempt_blueprints:
            return True
        view = current_app.view_functions.get(req.endpoint or "")
        return view is not None and f"{view.__module__}.{view.__name__}" in self._exempt_views

    def protect(self) -> None:
        """Pipeline step: refuse an unsafe request whose token does not match its cookie."""
        req = request._get_current_object()
        if req.method in SAFE_METHODS or not current_app.config.get("WTF_CSRF_ENABLED", True):
            return
        if self._is_exempt(req):
            return
        sent = req.form.get(FORM_FIELD) or next((req.headers[h] for h in HEADERS if h in req.headers), "")
        if not sent:
            raise CSRFError("The CSRF token is missing.")
        nonce = req.cookies.get(COOKIE_NAME, "")
        if not _NONCE.match(nonce) or not hmac.compare_digest(sent, self._sign(nonce)):
            raise CSRFError("The CSRF token does not match.")

    @staticmethod
    def set_cookie(response):
        """After step: send the nonce a token was made from, when the visitor had none."""
        nonce = g._get_current_object().get("csrf_new_nonce")
        if nonce:
            config = current_app.config
            response.set_cookie(
                COOKIE_NAME,
                nonce,
                max_age=config["SESSION_LIFETIME_HOURS"] * 3600,
                httponly=True,
                secure=config["SESSION_COOKIE_SECURE"],
                samesite="Lax",
            )
        return response
