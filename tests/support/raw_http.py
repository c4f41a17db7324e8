"""HTTP/1.1 over a raw socket: the request line and body go out byte for byte (NUL, raw UTF-8...)."""

from __future__ import annotations

import socket
from urllib.parse import quote_from_bytes


def percent_encode(text: str) -> str:
    """Every byte of the UTF-8 form (lone surrogates kept via surrogatepass) percent-encoded."""
    return quote_from_bytes(text.encode("utf-8", "surrogatepass"), safe="")


def raw_request(
    port: int,
    method: str,
    target: bytes,
    *,
    headers: dict | None = None,
    body: bytes = b"",
    timeout: float = 30.0,
) -> tuple[int, bytes]:
    """Send one request on a fresh connection; (status, body) of the answer."""
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}".encode("latin-1"))
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(b"Content-Length: " + str(len(body)).encode())
    payload = b"\r\n".join(lines) + b"\r\n\r\n" + body
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    response = b"".join(chunks)
    head, _, rest = response.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise AssertionError(f"no HTTP status line in {response[:200]!r}")
    return int(parts[1]), rest
