"""The load generator reuses a pooled keep-alive connection whatever its descriptor number, and
still drops one the server has closed."""

import resource
import socket

import pytest
from geventhttpclient.connectionpool import ConnectionPool

from bench import pooled_socket

HIGH = 1100  # past select()'s FD_SETSIZE (1,024)


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield server
    server.close()


@pytest.fixture
def high_descriptors():
    """Hold enough descriptors open that the next socket gets one past 1,023, as a locust process
    with a thousand users' connections does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = HIGH + 256
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"the open-files hard limit ({hard}) is below {wanted}")
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))  # a shell's default soft 1,024
    held = []
    probe = socket.socket()
    try:
        while probe.fileno() < HIGH:
            held.append(probe)
            probe = socket.socket()
        probe.close()
        yield
    finally:
        for sock in held:
            sock.close()
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _connected(listener):
    client = socket.create_connection(listener.getsockname())
    server_side, _ = listener.accept()
    return client, server_side


def test_an_idle_connection_past_descriptor_1023_is_alive_and_one_the_server_closed_is_not(
    listener, high_descriptors
):
    client, server_side = _connected(listener)
    try:
        assert client.fileno() >= HIGH
        assert pooled_socket.socket_alive(client)
        server_side.sendall(b"stray")  # bytes no request asked for: not reusable
        assert not _stays_alive(client)
    finally:
        client.close()
        server_side.close()
    client, server_side = _connected(listener)
    try:
        server_side.close()  # the server's FIN (e.g. its keepalive_timeout)
        assert not _stays_alive(client)
    finally:
        client.close()
    assert not pooled_socket.socket_alive(client)  # closed here: fileno -1
    assert not pooled_socket.socket_alive(None)


def _stays_alive(sock) -> bool:
    """Whether socket_alive holds through a hundred checks (the peer's bytes or FIN reach it at once on loopback)."""
    for _ in range(100):
        if not pooled_socket.socket_alive(sock):
            return False
        socket.socket().close()  # a syscall's worth of time, without a timed sleep
    return True


def test_the_pool_hands_back_the_same_connection_past_descriptor_1023(listener, high_descriptors):
    """With the library's select() check, the second get_socket found the first "dead" and
    connected again; with the installed check it is the same connection."""
    pooled_socket.install()
    host, port = listener.getsockname()
    pool = ConnectionPool(host, port, host, port, size=2)
    try:
        first = pool.get_socket()
        accepted, _ = listener.accept()
        assert first.fileno() >= HIGH
        pool.return_socket(first)
        again = pool.get_socket()
        assert again is first
        pool.return_socket(again)
        accepted.close()  # the server goes away: the pool must not hand that connection out
        for _ in range(100):
            fresh = pool.get_socket()
            if fresh is not first:
                break
            pool.return_socket(fresh)
        assert fresh is not first
        pool.return_socket(fresh)
    finally:
        pool.close()
