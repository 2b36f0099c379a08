"""Fan-out of progress events: 50 running tasks at 1 update a second each, to 10 open /ws/events/ sockets,
through the in-memory channel layer and through Redis. Prints delivered/expected and latency.

Prints, never asserts. Goal (issue #5): nothing lost, p95 < 250 ms.
The sockets are the app's real consumers behind its real ASGI stack (login, origin check, groups),
driven in this process by channels' WebsocketCommunicator; the publisher calls group_send as the
workers do.
    .venv/bin/python bench/fanout.py [--seconds 10] [--redis redis://127.0.0.1:6379/3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from _setup import setup_django


async def run(layer_name: str, config: dict, *, seconds: int, tasks: int, sockets: int) -> None:  # type: ignore[type-arg]
    from asgiref.sync import sync_to_async
    from channels.layers import channel_layers
    from channels.testing import WebsocketCommunicator
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    from mmsite.asgi import application
    from mmsite.events import EVENTS_GROUP

    settings.CHANNEL_LAYERS = {"default": config}
    channel_layers.backends.clear()
    layer = channel_layers["default"]

    def cookie() -> bytes:
        client = Client()
        user, _ = get_user_model().objects.get_or_create(username="bench")
        client.force_login(user)
        return f"sessionid={client.cookies['sessionid'].value}".encode()

    headers = [(b"cookie", await sync_to_async(cookie)()), (b"origin", b"http://localhost")]
    communicators = [
        WebsocketCommunicator(application, "/ws/events/", headers=headers) for _ in range(sockets)
    ]
    for communicator in communicators:
        connected, _ = await communicator.connect()
        assert connected
    latencies: list[float] = []
    received = [0] * sockets
    expected = seconds * tasks

    async def listen(index: int, communicator: WebsocketCommunicator) -> None:
        while received[index] < expected:
            try:
                event = await communicator.receive_json_from(timeout=5)
            except TimeoutError:
                return
            latencies.append(time.time() - event["data"]["sent"])
            received[index] += 1

    listeners = [asyncio.create_task(listen(i, c)) for i, c in enumerate(communicators)]
    interval = 1 / tasks  # each task sends once a second, spread evenly
    start = time.monotonic()
    for n in range(expected):
        await asyncio.sleep(max(0.0, start + n * interval - time.monotonic()))
        data = {"taskId": n % tasks, "progress": n // tasks, "sent": time.time()}
        await layer.group_send(
            EVENTS_GROUP, {"type": "event.message", "event": "update_download_task", "data": data}
        )
    await asyncio.gather(*listeners)
    for communicator in communicators:
        await communicator.disconnect()
    delivered = sum(received)
    latencies.sort()
    p95 = latencies[int(len(latencies) * 0.95) - 1] * 1000 if latencies else float("nan")
    median = statistics.median(latencies) * 1000 if latencies else float("nan")
    print(
        f"  {layer_name:<10} delivered {delivered}/{expected * sockets} "
        f"({delivered / (expected * sockets):.1%})   latency median {median:5.1f} ms   p95 {p95:5.1f} ms   (goal: all, p95 < 250 ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--sockets", type=int, default=10)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/3")
    args = parser.parse_args()
    setup_django(MM_ALLOWED_HOSTS="localhost,testserver")
    from django.conf import settings

    print(f"{args.tasks} tasks × 1 update/s × {args.seconds} s → {args.sockets} sockets")
    kwargs = {"seconds": args.seconds, "tasks": args.tasks, "sockets": args.sockets}
    asyncio.run(run("in-memory", settings.CHANNEL_LAYERS["default"], **kwargs))
    redis = {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [args.redis], "capacity": 1500, "expiry": 30},
    }
    try:
        asyncio.run(run("redis", redis, **kwargs))
    except OSError as exc:
        print(f"  redis      not reachable at {args.redis}: {exc}")


if __name__ == "__main__":
    main()
