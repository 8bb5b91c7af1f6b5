"""Which client a connection comes from, for the limits kept per client.

An IPv4 address is a client (an IPv4-mapped IPv6 address is its IPv4
address). An IPv6 address counts with its whole /64 network, since a single
host is commonly given one and can pick any address in it. Behind a proxy
every client is the proxy's address.
"""

from __future__ import annotations

import ipaddress


def source_of(address: str) -> str:
    """The client ``address`` (a peer's IP) counts as."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        if not ip.is_loopback:
            return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
