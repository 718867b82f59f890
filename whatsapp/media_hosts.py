"""Where media may be downloaded from: Meta's media hosts only, never an address inside the operator's network.

A media URL comes from a Graph lookup, but a redirect, a compromised peer or a misconfigured fake could point it
anywhere, and the download carries the access token. So every URL, and every hop of a redirect, is checked here
before it is requested: ``https``, a host on ``api.media_hosts`` and, for a host allowed by a wildcard
(``*.fbsbx.com``, the default), only public addresses. A host named exactly (a local fake in tests, the sandbox) is
trusted as named. The addresses are checked when the URL is, not pinned for the connection: this stops a redirect or
a wrong URL, not an attacker who controls Meta's DNS.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

#: Meta's media download host (``https://lookaside.fbsbx.com/whatsapp_business/attachments/...``).
META_MEDIA_HOSTS = ("*.fbsbx.com",)


def refusal(url: str, hosts: Sequence[str], plain_http_origin: str | None = None) -> str | None:
    """Why ``url`` must not be downloaded, or None when it may be. ``plain_http_origin`` (``scheme://host:port``)
    is the one origin allowed without TLS: the configured Graph URL, a local fake."""
    try:
        parts = urlsplit(url)
        port = parts.port or 443
    except ValueError as error:  # a bracket left open, a port out of range: it fails the same way every time
        return f"not a valid URL ({error})"
    host = (parts.hostname or "").lower().rstrip(".")
    if parts.scheme != "https" and f"{parts.scheme}://{parts.netloc}" != plain_http_origin:
        return f"not https ({parts.scheme or 'no scheme'}://{host})"
    exact = {entry.lower() for entry in hosts if not entry.startswith("*.")}
    if host in exact:
        return None
    suffixes = tuple(entry[1:].lower() for entry in hosts if entry.startswith("*."))
    if not (host and host.endswith(suffixes)):
        return f"{host or 'no host'} is not on api.media_hosts"
    for address in _addresses(host, port):
        if not address.is_global:
            return f"{host} resolves to {address}, a private or reserved address"
    return None


def _addresses(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The host's addresses; none when it does not resolve (the download then fails on its own, and is retried)."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return []
    found = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        mapped = getattr(address, "ipv4_mapped", None)
        found.append(mapped or address)
    return found
