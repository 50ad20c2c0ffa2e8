"""Addresses and readiness: parsing HOST[:PORT], free ports, and waiting for the oracle's port to answer.

The oracle's gRPC port and the temporary tracking server bind to loopback
unless the user names another address; `wait_port` replaces the long back-offs
of gRPC's own client with a short, bounded wait (a tracking server's is
store.wait_http).
"""

from __future__ import annotations

import ipaddress
import socket
import time

from ..errors import SearchError

LOOPBACK = "127.0.0.1"


def parse_address(text: str | None, *, default_host: str = LOOPBACK, default_port: int = 0,
                  need_port: bool = False, what: str = "address") -> tuple[str, int]:
    """`HOST`, `HOST:PORT`, `:PORT` or `[IPv6]:PORT` into (host, port)."""
    text = (text or "").strip()
    host, port = text, None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
    elif text.count(":") == 1:
        host, port = text.split(":")
    host = host or default_host
    if port in (None, ""):
        if need_port:
            raise SearchError(f"{what} {text!r}: give HOST:PORT")
        return host, default_port
    try:
        number = int(port)
        if not 0 <= number <= 65535:
            raise ValueError
    except ValueError:
        raise SearchError(f"{what} {text!r}: the port must be a number from 0 to 65535") from None
    return host, number


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def connect_host(bind_host: str) -> str:
    """Where a process on this machine reaches a server bound to bind_host."""
    if bind_host in ("", "0.0.0.0"):
        return LOOPBACK
    if bind_host == "::":
        return "::1"
    return bind_host


def free_port(host: str = LOOPBACK) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout: float = 600.0) -> None:
    """Until the oracle's port accepts connections (gRPC's own reconnects back off for many seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=2):
                return
        except OSError:
            if time.monotonic() >= deadline:
                raise SearchError(f"no oracle answers on {hostport(host, port)}") from None
            time.sleep(0.2)
