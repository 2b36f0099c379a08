"""WebSocket consumers: they only check the login, join a group and relay what the worker publishes."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer

from mmsite.events import EVENTS_GROUP, UI_GROUP, current_state_fragments

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
    """/ws/ui/: HTML fragments that htmx's ws extension swaps in by their id."""

    async def connect(self) -> None:
        if not self.scope["user"].is_authenticated:
            await self.close(code=UNAUTHORIZED)
            return
        await self.channel_layer.group_add(UI_GROUP, self.channel_name)
        await self.accept()
        # A page that (re)connects may have missed progress: send the current state first.
        await self.send(text_data=await database_sync_to_async(current_state_fragments)())

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(UI_GROUP, self.channel_name)

    async def ui_fragment(self, message: dict[str, Any]) -> None:
        await self.send(text_data=message["html"])
