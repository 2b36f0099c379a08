"""WebSocket consumers: they only check the login, join a group and relay what the worker publishes."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer

from mmsite.events import EVENTS_GROUP, UI_GROUP, current_state_fragments, live_topics, ui_topic_group

UNAUTHORIZED = 4401


class EventsConsumer(AsyncJsonWebsocketConsumer):
    """/ws/events/: JSON events `{"type": name, "data": …}` for scripts and other front ends."""

    async def connect(self) -> None:
        if not self.scope["user"].is_authenticated:
            await self.close(code=UNAUTHORIZED)
            return
        await self.channel_layer.group_add(EVENTS_GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(EVENTS_GROUP, self.channel_name)

    async def event_message(self, message: dict[str, Any]) -> None:
        await self.send_json({"type": message["event"], "data": message["data"]})


class UiConsumer(AsyncWebsocketConsumer):
    """/ws/ui/?live=scan,info: HTML fragments that htmx's ws extension swaps in by their id.

    Toasts reach every page; a live topic's fragments only the pages that name it (all, when the
    address names none), since htmx reports each fragment with no place on the page as an error.
    """

    groups_joined: tuple[str, ...] = ()

    async def connect(self) -> None:
        if not self.scope["user"].is_authenticated:
            await self.close(code=UNAUTHORIZED)
            return
        asked = parse_qs(self.scope["query_string"].decode("latin-1"), keep_blank_values=True).get("live")
        topics = live_topics(asked[0] if asked else None)
        self.groups_joined = (UI_GROUP, *map(ui_topic_group, topics))
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        # A page that (re)connects may have missed progress: send the current state first.
        state = await database_sync_to_async(current_state_fragments)(topics)
        if state:
            await self.send(text_data=state)

    async def disconnect(self, code: int) -> None:
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def ui_fragment(self, message: dict[str, Any]) -> None:
        await self.send(text_data=message["html"])
