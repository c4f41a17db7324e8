"""The client address as the per-address limits and quotas count it: IPv4 as is, IPv6 by network."""

from __future__ import annotations

import functools
import ipaddress


@functools.lru_cache(maxsize=4096)
def address_group(remote_addr: str | None, ipv6_prefix: int = 64) -> str:
    """One key per client network: an IPv4 address, or its IPv6 /ipv6_prefix (one home, one site).

    An IPv6 host picks any address in its /64 at will, so counting single IPv6 addresses would
    give one client 2**64 budgets; IPv4-mapped IPv6 addresses count as the IPv4 address.
    """
    if not remote_addr:
        return "-"
    try:
        address = ipaddress.ip_address(remote_addr.split("%", 1)[0])
    except ValueError:
        return remote_addr[:64]
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, ipv6_prefix), strict=False))
    return str(address)
