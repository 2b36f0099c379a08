"""Download throughput: the engine (SHA256 computed on the way) against `curl -o`, same file, same server.

Prints, never asserts. Goal (issue #3): the engine >= 0.8x curl, and its peak RSS flat whatever the size.
    .venv/bin/python bench/download.py [--size-mib 1024] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def child(url: str, dest: str) -> None:
    """Runs in its own process, so its peak RSS is the engine's alone."""
    from downloads_app.engine import DownloadJob, Engine

    start = time.perf_counter()
    result = Engine().download(DownloadJob(url=url, dest_dir=Path(dest), filename="engine.bin"))
    elapsed = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": elapsed, "sha256": result.sha256, "peak_rss_mib": peak_kib / 1024}))


def run_engine(url: str, dest: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", url, str(dest)], check=True, capture_output=True, text=True
    ).stdout
    (dest / "engine.bin").unlink()
    return json.loads(out)


def run_curl(url: str, dest: Path) -> tuple[float, float]:
    """curl's time, and curl's time plus an fsync of its file (the engine fsyncs before renaming)."""
    start = time.perf_counter()
    subprocess.run(["curl", "-s", "-f", "-o", str(dest / "curl.bin"), url], check=True)
    elapsed = time.perf_counter() - start
    fd = os.open(dest / "curl.bin", os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    synced = time.perf_counter() - start
    (dest / "curl.bin").unlink()
    return elapsed, synced


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", nargs=2)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    if not shutil.which("curl"):
        sys.exit("curl is needed for the baseline")
    from tests.upstream import FakeUpstream

    work = Path(tempfile.mkdtemp(prefix="mm-bench-download-"))
    try:
        upstream = FakeUpstream(work / "upstream").start()
        dest = work / "dest"
        dest.mkdir()
        sizes = sorted({min(256, args.size_mib), args.size_mib})
        for size_mib in sizes:
            stored = upstream.add_large_file(f"f{size_mib}", "model.safetensors", size_mib << 20)
            url = f"{upstream.storage_url}/files/{stored.key}"
            engine_times, curl_times, synced_times, rss = [], [], [], []
            for _ in range(args.runs):  # alternating, so both see the same machine state
                result = run_engine(url, dest)
                assert result["sha256"] == stored.sha256
                engine_times.append(result["seconds"])
                rss.append(result["peak_rss_mib"])
                curl_time, synced_time = run_curl(url, dest)
                curl_times.append(curl_time)
                synced_times.append(synced_time)
            mib = stored.size / (1 << 20)
            engine, curl = statistics.median(engine_times), statistics.median(curl_times)
            print(f"{size_mib} MiB, {args.runs} runs each, medians:")
            print(f"  curl -o:                 {mib / curl:7.0f} MiB/s")
            synced = statistics.median(synced_times)
            print(f"  curl -o, then fsync:     {mib / synced:7.0f} MiB/s")
            print(
                f"  engine (SHA256, fsync):  {mib / engine:7.0f} MiB/s   "
                f"{curl / engine:.2f}x curl (goal >= 0.8x), {synced / engine:.2f}x curl + fsync"
            )
            print(f"  engine peak RSS:         {max(rss):7.1f} MiB")
            (upstream.data_dir / stored.key).unlink()
        upstream.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
