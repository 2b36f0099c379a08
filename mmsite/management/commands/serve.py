"""Daphne and the worker in one process: the embedded default (DESIGN.md §2)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from mmsite.lan import EVERY_INTERFACE, machine_addresses
from mmsite.management.database import require_migrated

logger = logging.getLogger("mm.serve")


class Command(BaseCommand):
    help = "Serve the app (HTTP + WebSocket) with the background worker in the same process."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.HOST)
        parser.add_argument("--port", type=int, default=settings.PORT)
        parser.add_argument(
            "--no-worker", action="store_true", help="Serve pages only; run workers elsewhere."
        )
        parser.add_argument("--no-scan", action="store_true", help="Skip the scan of changed files at start.")

    def handle(
        self, *args: Any, host: str, port: int, no_worker: bool, no_scan: bool, **options: Any
    ) -> None:
        require_migrated()
        # Daphne installs Twisted's asyncio reactor on import: import it only here.
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server
        from twisted.internet import reactor
        from twisted.internet.defer import Deferred

        from mmsite.asgi import application
        from mmsite.events import bind_loop
        from mmsite.setup import setup_token
        from mmsite.worker import Worker
        from models_app.services import scan_start

        worker = None if no_worker else Worker()
        background: list[asyncio.Task[None]] = []  # a reference, so the task is not garbage-collected

        def ready() -> None:
            loop = asyncio.get_event_loop()
            bind_loop(loop)
            every_interface = host in EVERY_INTERFACE
            url = f"http://{'127.0.0.1' if every_interface else host}:{port}/"
            self.stdout.write(f"Model Manager is serving on {url}", ending="\n")
            if every_interface:
                for address in machine_addresses():
                    self.stdout.write(
                        f"  and on your network at http://{f'[{address}]' if ':' in address else address}:{port}/"
                    )
            if token := setup_token():
                self.stdout.write(
                    self.style.WARNING(
                        f"No account exists yet. Create the admin account here: {url}setup/{token}/"
                    )
                )
            self.stdout.flush()
            if worker is not None:
                background.append(loop.create_task(worker.run()))
                # Twisted waits for the returned Deferred: running jobs get to stop cleanly.
                reactor.addSystemEventTrigger(  # type: ignore[attr-defined]
                    "before",
                    "shutdown",  # type: ignore[arg-type]  # the zope interface stub counts `self`
                    lambda: Deferred.fromFuture(asyncio.ensure_future(worker.stop())),
                )
                if settings.MM_SCAN_ON_START and not no_scan:
                    loop.run_in_executor(None, scan_start)

        server = Server(
            application=application,
            endpoints=build_endpoint_description_strings(host=host, port=port),
            ready_callable=ready,
            verbosity=0,
            application_close_timeout=5,
        )
        server.run()
