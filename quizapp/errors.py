"""QuizError hierarchy and the one set of handlers that renders every error as a page or JSON."""

from __future__ import annotations

import logging

import psycopg2
import redis.exceptions
from flask import Flask, current_app, g, jsonify, make_response, render_template, request
from markupsafe import escape
from werkzeug.exceptions import HTTPException, InternalServerError

from .request_form import QuizRequest
from .responses import QuizResponse
from .slotted import filled_page, slot

log = logging.getLogger(__name__)


class QuizError(Exception):
    """An error with an HTTP status and a message fit to show the user."""

    status = 400
    title = "Something is wrong with that request"
    message = "Please check what you sent and try again."
    retry_after: int | None = None

    def __init__(self, message: str | None = None, *, status=None, retry_after=None, context=None):
        super().__init__(message or self.message)
        self.message = message or self.message
        if status is not None:
            self.status = status
        if retry_after is not None:
            self.retry_after = retry_after
        # Extra template variables, e.g. the answers a rejected form keeps.
        self.context = context or {}


# One small class per status and outage, the same few lines each on purpose: callers raise and catch
# them by type, and each names its status, title and message where a reader looks for them.
class BadRequest(QuizError):
    status = 400
    title = "That did not look right"


class NotFound(QuizError):
    status = 404
    title = "Not found"
    message = "We could not find that page."


class Forbidden(QuizError):
    status = 403
    title = "Not allowed"
    message = "You are not allowed to do that."


class Conflict(QuizError):
    status = 409
    title = "Conflict"


class TooManyRequests(QuizError):
    status = 429
    title = "Slow down"
    message = "Too many requests. Please wait a moment and try again."
    retry_after = 60


class ServiceUnavailable(QuizError):
    status = 503
    title = "We are briefly unavailable"
    message = (
        "Part of the service is not answering right now. "
        "Your answers are safe; please try again in a few seconds."
    )
    retry_after = 5


class DatabaseUnavailable(ServiceUnavailable):
    message = (
        "Our database is not answering right now. Your answers are safe; please try again in a few seconds."
    )


class PoolExhausted(ServiceUnavailable):
    message = "We are very busy right now. Your answers are safe; please try again in a few seconds."


class RedisUnavailable(ServiceUnavailable):
    message = "Our session store is not answering right now. Please try again in a few seconds."


def _route() -> str:
    """The matched rule, not the path: logs never hold public ids or tokens."""
    return request.url_rule.rule if request.url_rule is not None else "-"


def wants_json() -> bool:
    if request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    accept = request.accept_mimetypes
    return best == "application/json" and accept[best] > accept["text/html"]


def render_error(status: int, title: str, message: str, retry_after=None, context=None):
    request_id = getattr(g, "request_id", None)
    if wants_json():
        body = {"error": title, "message": message, "status": status, "request_id": request_id}
        response = jsonify(body)
    else:
        response = make_response(_error_html(status, title, message, request_id, context))
    response.status_code = status
    if retry_after:
        response.headers["Retry-After"] = str(int(retry_after))
    return response


ERROR_TEMPLATE = "error.html"
_REQUEST_ID_SLOT = slot("request_id")
_MAX_CACHED_PAGES = 512  # messages may carry figures: a bounded set of pages per worker


def _error_html(status: int, title: str, message: str, request_id, context) -> str:
    """The error page, rendered once per worker for each (status, title, message): a refused
    request (429 to an abusive client, many a second) costs a dict lookup, not a Jinja render.
    Pages with their own extras (context) are rendered each time."""
    if context or not request_id:
        extras = context or {}
        return render_template(
            ERROR_TEMPLATE, status=status, title=title, message=message, request_id=request_id, **extras
        )
    return filled_page(
        ERROR_TEMPLATE,
        key=(status, title, message),
        values={"request_id": str(escape(request_id))},
        render=lambda: render_template(
            ERROR_TEMPLATE, status=status, title=title, message=message, request_id=_REQUEST_ID_SLOT
        ),
        max_pages=_MAX_CACHED_PAGES,
    )


def _outage_for(exc):
    """Map a dependency exception to the QuizError a user should see, or None."""
    if isinstance(exc, QuizError):
        return exc
    if isinstance(exc, redis.exceptions.RedisError):
        return RedisUnavailable()
    if isinstance(exc, psycopg2.OperationalError):
        return DatabaseUnavailable()
    return None


def handle_quiz_error(exc: QuizError):
    if exc.status >= 500:
        log.warning("request.unavailable", extra={"error": type(exc).__name__, "route": _route()})
    return render_error(exc.status, exc.title, exc.message, exc.retry_after, exc.context)


def _too_large_message(limit: int | None) -> str:
    """The 413 text, naming the configured MAX_CONTENT_LENGTH in the largest whole unit."""
    if not limit:
        return "What you sent was larger than we accept."
    for unit, size in (("MB", 1024 * 1024), ("KB", 1024)):
        if limit >= size and limit % size == 0:
            return f"What you sent was larger than we accept ({limit // size} {unit} at most)."
    return f"What you sent was larger than we accept ({limit} bytes at most)."


def handle_http_error(exc: HTTPException):
    if isinstance(exc, InternalServerError):
        return handle_unexpected(exc.original_exception or exc)
    titles = {
        400: "That did not look right",
        404: "Not found",
        405: "Method not allowed",
        413: "That was too large",
    }
    messages = {
        404: "We could not find that page.",
        405: "That page does not accept this kind of request.",
        413: _too_large_message(current_app.config.get("MAX_CONTENT_LENGTH")),
    }
    title = titles.get(exc.code, exc.name)
    message = messages.get(exc.code, exc.description or exc.name)
    retry_after = getattr(exc, "retry_after", None)
    return render_error(exc.code or 400, title, message, retry_after)


def handle_unexpected(exc):
    mapped = _outage_for(exc)
    if mapped is not None:
        return handle_quiz_error(mapped)
    log.exception("request.unhandled", extra={"route": _route()})
    return render_error(
        500, "Something went wrong on our side", "We have logged the problem. Please try again."
    )


_MAX_SYNC_FUNCTIONS = 1024  # hooks, views and error handlers: a few dozen in this app


class QuizFlask(Flask):
    """Flask, except that a dependency outage is not logged as a crash: an exception raised outside
    a view (a session write after the response was built) reaches `handle_exception`, which would
    log "Exception on ..." with a traceback; handle_quiz_error logs the outage as one warning."""

    request_class = QuizRequest  # small urlencoded forms parsed in one call (request_form.py)
    response_class = QuizResponse  # headers copied out without a second check (responses.py)

    def log_exception(self, exc_info) -> None:
        if _outage_for(exc_info[1]) is None:
            super().log_exception(exc_info)

    def ensure_sync(self, func):
        """Flask asks this for every hook and view of every request (14 a page, each an `inspect`
        call); the answer for a function never changes, so remember it."""
        try:
            return self._sync_functions[func]
        except AttributeError:
            self._sync_functions = {}
        except KeyError:
            pass
        except TypeError:  # an unhashable callable: ask Flask every time
            return super().ensure_sync(func)
        sync = super().ensure_sync(func)
        # A closure may be made per request (copy_current_request_context): never keep one alive.
        if getattr(func, "__closure__", None) is None and len(self._sync_functions) < _MAX_SYNC_FUNCTIONS:
            self._sync_functions[func] = sync
        return sync


def register_error_handlers(app):
    app.register_error_handler(QuizError, handle_quiz_error)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_unexpected)
