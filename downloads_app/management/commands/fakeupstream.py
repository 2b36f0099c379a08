"""Runs the test suite's fake Civitai and Hugging Face, for trying every flow offline (`make demo`)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Serve a fake Civitai and Hugging Face with a small catalogue (a development tool)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--data-dir", default="", help="Where its files are made (default: a temp dir).")
        parser.add_argument("--env-file", default="", help="Write MM_CIVITAI_URL and HF_ENDPOINT here.")
        parser.add_argument("--throttle", type=int, default=2_000_000, help="Bytes per second per download.")

    def handle(self, *args: Any, data_dir: str, env_file: str, throttle: int, **options: Any) -> None:
        # A test tool: imported here only, never by the app itself.
        from tests.upstream import FakeUpstream, Fault, build_demo_catalogue

        folder = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="mm-fake-upstream-"))
        upstream = build_demo_catalogue(FakeUpstream(folder).start(), size=20_000_000)
        for key in upstream.files:
            upstream.faults[key] = Fault(throttle=throttle)
        lines = [f"MM_CIVITAI_URL={upstream.civitai_url}", f"HF_ENDPOINT={upstream.hf_url}"]
        if env_file:
            Path(env_file).write_text("\n".join(lines) + "\n")
        self.stdout.write("Fake Civitai and Hugging Face are serving:\n  " + "\n  ".join(lines))
        self.stdout.write(
            "Try: "
            f"{upstream.civitai_url}/models/1231067 · {upstream.civitai_url}/models/4201 · "
            f"{upstream.civitai_url}/models/5001 (needs a key: civitai-good-key) · "
            f"{upstream.hf_url}/demo-org/demo-models · {upstream.hf_url}/gated-org/gated-model (token: hf_good_token)"
        )
        self.stdout.flush()
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            upstream.close()
