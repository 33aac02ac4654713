"""Which webhook URLs we send to: http(s) only, and no loopback/private/link-local/reserved address
(a tenant-given URL must not reach the operator's internal network) unless the operator allows it."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


class BadWebhookUrl(ValueError):
    pass


def check_url(url: str, *, allow_private: bool, resolve: bool = True) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadWebhookUrl(f"webhook URL must be http(s)://host/..., got {url!r}")
    if parts.username or parts.password:
        raise BadWebhookUrl("webhook URL must not carry credentials")
    if allow_private or not resolve:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                                   type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise BadWebhookUrl(f"webhook host {parts.hostname!r} does not resolve ({exc})") from None
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%")[0])
        if not ip.is_global or ip.is_multicast:
            raise BadWebhookUrl(f"webhook host {parts.hostname!r} resolves to a non-public address ({ip}); "
                                "the operator has not allowed private webhook targets")
