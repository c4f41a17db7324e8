"""One-line key=value log records with secrets redacted and user input escaped (no CRLF injection)."""

from __future__ import annotations

import logging
import re
import sys
import time

# Attributes every LogRecord has; anything else on a record came in through `extra=`.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
# Field names whose values are never written, whatever they hold.
_SECRET_FIELDS = re.compile(r"(?i)(email|cookie|session|sid|password|passwd|secret|token|key|authorization)")
_EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
_SECRET_PATTERNS = (
    (re.compile(r"(?i)(bizmodel\.sid|session|cookie)\s*[=:]\s*[^\s;,]+"), r"\1=[redacted]"),
    (re.compile(r"(?i)(authorization\s*[=:]\s*|bearer\s+)[^\s,;]+"), r"\1[redacted]"),
    (re.compile(r"\b(sk|pk|rk)_(live|test)_[0-9A-Za-z]+"), "[redacted-key]"),
    (re.compile(r"\bwhsec_[0-9A-Za-z]+"), "[redacted-key]"),
    (re.compile(r"\bsk-[0-9A-Za-z_-]{8,}"), "[redacted-key]"),
    (re.compile(r"(?i)(password|passwd|secret|api_key)\s*[=:]\s*[^\s,;]+"), r"\1=[redacted]"),
)
_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\"\\]")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"', "\\": "\\\\"}
_MAX_VALUE = 2000


# Every pattern above needs one of these; text without any (most log fields) is returned at once.
_MIGHT_HOLD_SECRET = re.compile(r"(?i)[@=:]|bearer|sk-|sk_|pk_|rk_|whsec_")


def redact(text: str) -> str:
    """Remove emails, cookies, session ids and keys from free text."""
    if not _MIGHT_HOLD_SECRET.search(text):
        return text
    text = _EMAIL.sub("[email]", text)
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _escape_char(match: re.Match) -> str:
    char = match.group(0)
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def escape(value) -> str:
    """Render a value on one line: control characters escaped, quoted when it has spaces."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > _MAX_VALUE:
        text = text[:_MAX_VALUE] + "..."
    text = _UNSAFE_CHARS.sub(_escape_char, text)
    if not text or " " in text or "=" in text or '\\"' in text:
        return f'"{text}"'
    return text


class KeyValueFormatter(logging.Formatter):
    """ts=... level=... logger=... msg=... then every `extra` field, all redacted and escaped."""

    def format(self, record: logging.LogRecord) -> str:
        created = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        fields = [
            ("ts", f"{created}.{int(record.msecs):03d}Z"),
            ("level", record.levelname.lower()),
            ("logger", record.name),
            ("msg", redact(record.getMessage())),
        ]
        for name, value in vars(record).items():
            if name in _RECORD_ATTRS or name.startswith("_"):
                continue
            if _SECRET_FIELDS.search(name) and name != "request_id":
                value = "[redacted]"
            fields.append((name, value if isinstance(value, (int, float)) else redact(str(value))))
        if record.exc_info:
            fields.append(("exc", redact(self.formatException(record.exc_info))))
        return " ".join(f"{name}={escape(value)}" for name, value in fields)


class StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at emit time (test runners swap it)."""

    def __init__(self):
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def configure_logging(level: int = logging.INFO) -> None:
    """Install the key=value handler on the root logger once per process."""
    root = logging.getLogger()
    if not any(isinstance(handler, StderrHandler) for handler in root.handlers):
        handler = StderrHandler()
        handler.setFormatter(KeyValueFormatter())
        root.addHandler(handler)
    for name in ("quizapp", "flask-limiter"):
        logging.getLogger(name).setLevel(level)
