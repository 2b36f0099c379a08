from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from mmsite.management.database import require_migrated


class Command(BaseCommand):
    help = "Run a background worker only (scans, downloads); serve pages with `serve --no-worker`."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--concurrency",
            type=int,
            default=None,
            help="Downloads this worker runs at once (MM_DOWNLOAD_CONCURRENCY).",
        )

    def handle(self, *args: Any, concurrency: int | None, **options: Any) -> None:
        from mmsite.worker import Worker

        require_migrated()

        if concurrency is not None:
            settings.MM_DOWNLOAD_CONCURRENCY = max(1, concurrency)

        async def main() -> None:
            worker = Worker()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, lambda: asyncio.ensure_future(worker.stop()))
            self.stdout.write(f"Worker {worker.owner} is running. Ctrl-C stops it.")
            await worker.run()

        asyncio.run(main())
