"""The load generator's check that a pooled keep-alive connection is still usable.

geventhttpclient (2.6.1) checks an idle pooled socket with select.select() before reusing it.
select() refuses descriptors past FD_SETSIZE (1,023) with ValueError, which the check reads as
"dead": every simulated user whose socket got a descriptor past 1,023 closed it and opened a new
one for each request. In a 2,500-user step (two locust processes of 1,250 users each) that was 950
people, 28,120 connections of one request each against 4,474 that carried a whole quiz (nginx's
$connection / $connection_requests, 2026-11-28), and in a 4x step nearly every user: about a
quarter of locust's CPU went to connect, close and this check, and nginx accepted a connection per
request. poll() has no such bound.
"""

from __future__ import annotations

import select

from gevent import monkey

# The blocking poll: a zero timeout never waits, and gevent's cooperative one only adds a hub
# round trip.
_poll = monkey.get_original("select", "poll")
_READABLE = select.POLLIN | select.POLLPRI


def socket_alive(sock) -> bool:
    """True when an idle pooled socket can carry the next request: open, and nothing to read (a
    readable idle socket holds the server's FIN or bytes no request asked for). POLLHUP and
    POLLERR are reported whatever the mask, and count as dead too."""
    if sock is None:
        return False
    try:
        descriptor = sock.fileno()
        if descriptor < 0:
            return False
        poller = _poll()
        poller.register(descriptor, _READABLE)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False


def install() -> None:
    """Use socket_alive for geventhttpclient's pool check (the locustfile calls it at import)."""
    from geventhttpclient.connectionpool import ConnectionPool

    ConnectionPool._is_socket_alive = lambda _pool, sock: socket_alive(sock)
