"""The scale-out tools of scripts/ (PgBouncer, Redis HA, hosts), imported for the tests."""

from __future__ import annotations

import importlib.util
import socket

from tests.support.servers import ROOT, free_port


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pgbouncer = _load("pgbouncer")
PgBouncer = pgbouncer.PgBouncer
redis_ha = _load("redis_ha")
RedisHA = redis_ha.RedisHA


def free_port_block(count: int, host: str = "127.0.0.1") -> int:
    """The first of `count` consecutive ports that are free right now."""
    for _ in range(50):
        base = free_port(host)
        if base + count > 65535:
            continue
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no block of {count} free ports found")
