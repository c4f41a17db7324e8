"""Shared pieces of the ai package's Redis scripts: Redis's clock in Lua, and replies as text."""

from __future__ import annotations

# Prepended to every script that needs the time: Redis TIME in ms, the one clock all workers share.
LUA_NOW = "local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"


def as_text(value) -> str:
    """A Redis reply (bytes, str or a number) as str."""
    return value.decode() if isinstance(value, bytes) else str(value)
