"""A TCP proxy in front of Postgres counting the client's round trips (Query messages), with their text.

Used by tests/test_db_round_trips.py and bench/round_trips.py: psycopg2 speaks the simple query
protocol, one Query message per round trip (its own BEGIN and COMMIT included), so the count seen
on the wire is the count that costs a wait, a wakeup and syscalls in the app.
"""

from __future__ import annotations

import socket
import struct
import threading

# Untyped messages before the startup packet: SSL and GSS encryption requests (answered with 'N').
_STARTUP_CODE = 196608  # protocol 3.0
_CHUNK = 65536


class PgWireCounter:
    """Listen on 127.0.0.1:<free port>, forward every connection to (host, port), count 'Q' messages."""

    def __init__(self, upstream_host: str, upstream_port: int):
        self.upstream = (upstream_host, upstream_port)
        self.queries: list[str] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stopping = False
        self._threads: list[threading.Thread] = []

    def url(self, database_url: str) -> str:
        """database_url with its host and port replaced by this proxy (no TLS: the wire must be readable)."""
        from urllib.parse import urlparse, urlunparse

        parts = urlparse(database_url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{self.port}" if credentials else f"127.0.0.1:{self.port}"
        sep = "&" if parts.query else ""
        return urlunparse(parts._replace(netloc=netloc, query=f"{parts.query}{sep}sslmode=disable"))

    def start(self) -> PgWireCounter:
        self._spawn(self._accept)
        return self

    def stop(self) -> None:
        self._stopping = True
        self._listener.close()

    def take(self) -> list[str]:
        """The Query texts seen since the last take (or start), in order; clears them."""
        with self._lock:
            seen, self.queries = self.queries, []
        return seen

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while not self._stopping:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self._spawn(self._pump, server, client, False)
            self._spawn(self._pump, client, server, True)

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        buffer = b""
        started = not from_client
        try:
            while True:
                data = source.recv(_CHUNK)
                if not data:
                    break
                if from_client:  # recorded before Postgres can answer it: no race with take()
                    buffer, started = self._parse(buffer + data, started)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def _parse(self, buffer: bytes, started: bool) -> tuple[bytes, bool]:
        while True:
            if not started:  # untyped: int32 length, int32 code
                if len(buffer) < 8:
                    return buffer, started
                length, code = struct.unpack("!ii", buffer[:8])
                if len(buffer) < length:
                    return buffer, started
                buffer, started = buffer[length:], code == _STARTUP_CODE
                continue
            if len(buffer) < 5:
                return buffer, started
            kind, length = buffer[:1], struct.unpack("!i", buffer[1:5])[0]
            if len(buffer) < 1 + length:
                return buffer, started
            if kind == b"Q":
                text = buffer[5 : 1 + length].rstrip(b"\0").decode("utf-8", "replace")
                with self._lock:
                    self.queries.append(text)
            buffer = buffer[1 + length :]
