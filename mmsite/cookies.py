"""Separate login and CSRF cookies for HTTPS and plain HTTP on the same host name.

A user may reach the app both through an HTTPS proxy (https://nas.local) and directly on the LAN
(http://nas.local:8000): cookies know no port, so both share one jar. A cookie set over HTTPS is Secure,
and browsers let no plain-HTTP page replace a Secure cookie of the same name, nor send it one: the HTTP
side could then neither log in nor post a form. Over HTTPS the cookies are therefore named with the
`__Secure-` prefix; over HTTP they keep Django's names, and each side has a jar of its own. (A login
kept from before this split, under the plain name over HTTPS, is asked for again once.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:  # the settings import this module (through proxies.py): it stays light
    from django.http import HttpResponse

SECURE_PREFIX = "__Secure-"


def _names() -> tuple[str, ...]:
    return (settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME)


def read_https_names(cookies: MutableMapping[str, str]) -> None:
    """On a request that came over HTTPS: Django's own names hold the `__Secure-` cookies, and a cookie of
    the HTTP side (a login there) is left out, or logging out over HTTPS would leave that one in use."""
    for name in _names():
        value = cookies.pop(SECURE_PREFIX + name, None)
        if value is None:
            cookies.pop(name, None)
        else:
            cookies[name] = value


def write_https_names(response: HttpResponse) -> None:
    """On an answer over HTTPS: the cookies Django set go out under their `__Secure-` names, Secure."""
    for name in _names():
        morsel = response.cookies.pop(name, None)
        if morsel is not None:
            renamed = SECURE_PREFIX + name
            response.cookies[renamed] = morsel.value
            response.cookies[renamed].update(dict(morsel.items()))
    for morsel in response.cookies.values():
        morsel["secure"] = True


class HttpsCookieNamesForSockets:
    """For WebSockets (between Channels' cookie and session middleware): a browser sends the `__Secure-`
    session cookie only over a secure connection, so when it is there it is the one to use."""

    def __init__(self, inner: Callable[..., Awaitable[None]]) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        cookies = scope.get("cookies") or {}
        if SECURE_PREFIX + settings.SESSION_COOKIE_NAME in cookies:
            cookies = dict(cookies)
            read_https_names(cookies)
            scope = {**scope, "cookies": cookies}
        await self.inner(scope, receive, send)
