from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmsite.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddleware  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from channels.sessions import CookieMiddleware, SessionMiddleware  # noqa: E402
from django.urls import path  # noqa: E402

from mmsite.consumers import EventsConsumer, UiConsumer  # noqa: E402
from mmsite.cookies import HttpsCookieNamesForSockets  # noqa: E402

websocket_urlpatterns = [
    path("ws/events/", EventsConsumer.as_asgi()),
    path("ws/ui/", UiConsumer.as_asgi()),
]

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Channels' AuthMiddlewareStack, with the HTTPS session cookie's own name read in the middle.
        "websocket": AllowedHostsOriginValidator(
            CookieMiddleware(
                HttpsCookieNamesForSockets(
                    SessionMiddleware(AuthMiddleware(URLRouter(websocket_urlpatterns)))
                )
            )
        ),
    }
)
