"""The host names a browser may use to reach this machine, for ALLOWED_HOSTS.

Listening on every interface (`MM_HOST=0.0.0.0`) is how people serve their LAN, and the browsers there
use this machine's name or address, which Django would refuse with a 400 unless it is allowed.
"""

from __future__ import annotations

import contextlib
import socket

LOCAL_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
EVERY_INTERFACE = {"0.0.0.0", "::", ""}


def machine_addresses() -> list[str]:
    """This machine's own IP addresses, loopback left out: those its own name resolves to (from
    /etc/hosts, usually), and the one its default route leaves from. Asked only with MM_HOST=0.0.0.0."""
    found: set[str] = set()
    with contextlib.suppress(OSError):
        for *_, sockaddr in socket.getaddrinfo(socket.gethostname(), None):
            found.add(str(sockaddr[0]).split("%")[0])
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # connecting a UDP socket sends nothing: it only picks the route
        found.add(probe.getsockname()[0])
    return sorted(a for a in found if not a.startswith("127.") and a not in {"::1", "0.0.0.0"})


def default_allowed_hosts(listen_host: str) -> list[str]:
    """What the app answers to when MM_ALLOWED_HOSTS is not set: this machine, and when it listens on
    every interface, its name (plain and `.local`) and addresses too."""
    if listen_host not in EVERY_INTERFACE:
        return [*LOCAL_HOSTS, listen_host]
    name = socket.gethostname()
    addresses = [f"[{a}]" if ":" in a else a for a in machine_addresses()]
    return [*LOCAL_HOSTS, name, f"{name}.local", *addresses]
