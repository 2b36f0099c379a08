"""What the reverse proxies the user trusts (MM_TRUSTED_PROXIES) say about the client behind a request.

Behind a proxy every request comes from the proxy's address, so the login throttle would count all
clients as one, and anyone could lock a user out by failing on purpose. X-Forwarded-For says who the
proxy served, but any client can send one too: it is read only when the request comes from a trusted
proxy, and then from its right end, which the proxies wrote, skipping the trusted ones. The first
address left is the client; whatever a client put further left is ignored.

X-Forwarded-Proto says whether the browser spoke HTTPS to the proxy. Django's CSRF check compares the
page's origin, https://…, with the scheme it sees, so without it every form behind a TLS proxy failed
unless the user listed the origin by hand. It too is believed only from a trusted proxy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from mmsite.cookies import read_https_names, write_https_names

if TYPE_CHECKING:  # the settings import this module: it stays light
    from django.http import HttpRequest, HttpResponse

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted_proxies(value: str) -> tuple[Network, ...]:
    """`10.0.0.2, 172.18.0.0/16, ::1` → the networks; a part that is neither is a setup error."""
    networks = []
    for part in filter(None, (p.strip() for p in value.split(","))):
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"MM_TRUSTED_PROXIES: {part!r} is neither an IP address nor a network such as 10.0.0.0/8"
            ) from None
    return tuple(networks)


def _address(hop: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address of one X-Forwarded-For entry; some proxies add the port (`1.2.3.4:5678`, `[::1]:80`)."""
    hop = hop.strip()
    if hop.startswith("[") and "]" in hop:
        hop = hop[1 : hop.index("]")]
    elif hop.count(":") == 1:
        hop = hop.partition(":")[0]
    try:
        return ipaddress.ip_address(hop)
    except ValueError:
        return None


def _is_trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
    return address is not None and any(address in network for network in settings.MM_TRUSTED_PROXIES)


def _from_trusted_proxy(request: HttpRequest) -> bool:
    return _is_trusted(_address(request.META.get("REMOTE_ADDR", "")))


def client_address(request: HttpRequest) -> str:
    """REMOTE_ADDR, or the client a trusted proxy says it forwarded."""
    remote = request.META.get("REMOTE_ADDR", "")
    if not _from_trusted_proxy(request):
        return remote
    hops = [hop for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        address = _address(hop)
        if not _is_trusted(address):
            # Not an address at all: the proxy wrote it, so it still tells this client from others.
            return str(address) if address is not None else hop.strip()[:100]
    # Every hop is a proxy of ours (or there is no header): the leftmost is the nearest to a client.
    return str(_address(hops[0])) if hops else remote


class TrustedProxyMiddleware:
    """First in the chain: X-Forwarded-Proto (SECURE_PROXY_SSL_HEADER) from anyone but a trusted proxy is
    dropped before Django reads it. Cookies set on a request that came over HTTPS are marked Secure, and
    the login and CSRF ones take names of their own (cookies.py); over plain HTTP on a LAN they cannot be
    Secure, or no browser would send them back."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not _from_trusted_proxy(request):
            request.META.pop("HTTP_X_FORWARDED_PROTO", None)
        if not request.is_secure():
            return self.get_response(request)
        read_https_names(request.COOKIES)
        response = self.get_response(request)
        write_https_names(response)
        return response
