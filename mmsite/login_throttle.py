"""Failed logins, counted per client address and username.

After MAX_FAILURES within WINDOW seconds, that pair is refused, even with the right password, until the
window that its first failure opened ends: guessing a password over the LAN then takes years, not hours,
and a user who mistyped waits a quarter of an hour from that address only. The counts live in the
"logins" cache, which is Redis when several processes serve the app, so they share them.
"""

from __future__ import annotations

import hashlib
import time

from django.core.cache import caches

WINDOW = 15 * 60
MAX_FAILURES = 5


def _keys(address: str, username: str) -> tuple[str, str]:
    digest = hashlib.sha256(f"{address}\0{username.casefold()}".encode()).hexdigest()
    return f"login-failures:{digest}", f"login-failures-since:{digest}"


def seconds_refused(address: str, username: str) -> int:
    """How long logins of `username` from `address` are still refused; 0 when they are not."""
    count_key, since_key = _keys(address, username)
    cache = caches["logins"]
    if (cache.get(count_key) or 0) < MAX_FAILURES:
        return 0
    since = cache.get(since_key) or time.time()
    return max(1, round(since + WINDOW - time.time()))


def record_failure(address: str, username: str) -> None:
    count_key, since_key = _keys(address, username)
    cache = caches["logins"]
    cache.add(since_key, time.time(), WINDOW)
    # add, then incr: both atomic, so logins tried in parallel are all counted.
    if not cache.add(count_key, 1, WINDOW):
        try:
            cache.incr(count_key)
        except ValueError:  # the window ended between the two calls
            cache.add(count_key, 1, WINDOW)


def forget_failures(address: str, username: str) -> None:
    caches["logins"].delete_many(list(_keys(address, username)))
