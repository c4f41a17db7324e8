"""The OpenAI SDK client and the classification of its errors (retry or not, breaker or not)."""

from __future__ import annotations

import logging

import openai

log = logging.getLogger(__name__)


class UpstreamError(Exception):
    """The upstream answered with something we cannot use (empty or malformed completion)."""


def build_client(config) -> openai.OpenAI:
    """One SDK client per process; the SDK never retries on its own (tenacity owns retries)."""
    # A call must end before its in-flight lease expires, or the cap could be exceeded.
    timeout = min(float(config["OPENAI_TIMEOUT"]), 0.9 * float(config["AI_LEASE_SECONDS"]))
    return openai.OpenAI(
        api_key=config["OPENAI_API_KEY"],
        base_url=config["OPENAI_BASE_URL"] or None,
        max_retries=0,
        timeout=openai.Timeout(timeout, connect=min(5.0, timeout)),
    )


def complete_chat(client: openai.OpenAI, model: str, messages: list[dict]) -> str:
    """One upstream attempt: the assistant's text, or an exception."""
    try:
        completion = client.chat.completions.create(model=model, messages=messages, temperature=0.7)
        text = completion.choices[0].message.content if completion.choices else None
    except openai.APIError:
        raise
    except (ValueError, AttributeError, TypeError, IndexError) as exc:  # malformed body
        raise UpstreamError(f"malformed completion: {type(exc).__name__}") from exc
    if not text or not text.strip():
        raise UpstreamError("empty completion")
    return text.strip()


def is_retryable(exc: BaseException) -> bool:
    """Retry only what a retry can fix: 429, 5xx, timeouts and connection errors."""
    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError)):
        return True
    return isinstance(exc, openai.APIStatusError) and exc.status_code >= 500


def got_an_answer(exc: BaseException) -> bool:
    """Did the upstream answer (then the request had arrived), or might it still be on its way?"""
    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError)):
        return False
    return isinstance(exc, (openai.APIStatusError, UpstreamError))


def counts_as_failure(exc: BaseException) -> bool:
    """Failures that feed the breaker: everything except rate limiting (that is backpressure)."""
    return not isinstance(exc, openai.RateLimitError)


def retry_after_seconds(exc: BaseException) -> float | None:
    """The server's requested delay from retry-after-ms or retry-after, if any."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    for header, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(header)
        if raw:
            try:
                return max(0.0, float(raw) / divisor)
            except ValueError:
                continue
    return None
