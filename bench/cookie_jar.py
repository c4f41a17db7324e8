"""The load generator's cookie jar: one simulated visitor talking to one host.

locust's FastHttpSession keeps cookies in http.cookiejar.CookieJar, built for a browser's many
sites: on every request it sweeps expired cookies, matches domains and paths through its policy
object and sorts by path, and on every response it parses each Set-Cookie into a Cookie object
with the policy's checks. In a 2,750-user step that was about a tenth of locust's CPU (py-spy:
add_cookie_header 9 %, extraction besides), on a box where the generator's CPU is taken from the
servers it measures. A simulated visitor talks to one host under one path, so this jar keeps
name -> value and honours what the app's cookies use: Max-Age and Expires (a removal is a past
Expires or Max-Age=0). Domain, Path, Secure, HttpOnly and SameSite are kept by the app's cookies
to one host and "/", so they change nothing here.
"""

from __future__ import annotations

import time
from http.cookiejar import http2time

FOREVER = float("inf")


class HostCookieJar:
    """The interface FastHttpSession and geventhttpclient's UserAgent call: add_cookie_header,
    extract_cookies, clear (and len() / iteration of names, for inspection)."""

    def __init__(self) -> None:
        self._cookies: dict[str, tuple[str, float]] = {}  # name -> (value, expires at, epoch s)
        self._header = ""  # the Cookie header while nothing expires or changes
        self._earliest = FOREVER  # when the first of them expires

    def __len__(self) -> int:
        return len(self._cookies)

    def __iter__(self):
        return iter(self._cookies)

    def get(self, name: str) -> str | None:
        found = self._cookies.get(name)
        return found[0] if found is not None and found[1] > time.time() else None

    def clear(self, *_args) -> None:
        self._cookies.clear()
        self._header = ""

    def add_cookie_header(self, request) -> None:
        if not self._cookies or "Cookie" in request.headers:
            return
        if self._header and self._earliest > time.time():
            request.headers.add("Cookie", self._header)
            return
        now = time.time()
        for name in [n for n, (_, expires) in self._cookies.items() if expires <= now]:
            del self._cookies[name]
        self._rebuild()
        if self._header:
            request.headers.add("Cookie", self._header)

    def extract_cookies(self, response, _request=None) -> None:
        lines = response.headers.getlist("Set-Cookie")
        if not lines:
            return
        now = time.time()
        for line in lines:
            parsed = _parse(line, now)
            if parsed is None:
                continue
            name, value, expires = parsed
            if expires <= now:
                self._cookies.pop(name, None)
            else:
                self._cookies[name] = (value, expires)
        self._rebuild()

    def _rebuild(self) -> None:
        self._header = "; ".join(f"{name}={value}" for name, (value, _) in self._cookies.items())
        self._earliest = min((expires for _, expires in self._cookies.values()), default=FOREVER)


def _parse(line: str, now: float) -> tuple[str, str, float] | None:
    """(name, value, expires at) of one Set-Cookie line; Max-Age wins over Expires (RFC 6265)."""
    pair, _, attributes = line.partition(";")
    name, sep, value = pair.partition("=")
    name = name.strip()
    if not sep or not name:
        return None
    max_age = expires = None
    for attribute in attributes.split(";"):
        key, _, argument = attribute.partition("=")
        key = key.strip().lower()
        if key == "max-age":
            try:
                max_age = int(argument.strip())
            except ValueError:
                continue
        elif key == "expires":
            expires = argument.strip()
    if max_age is not None:
        return name, value.strip(), now + max_age if max_age > 0 else 0.0
    stamp = http2time(expires) if expires else None
    return name, value.strip(), FOREVER if stamp is None else float(stamp)
