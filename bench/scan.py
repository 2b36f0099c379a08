"""Scan speed: first scan and no-change rescan of 10,000 models against a bare scandir + header walk.

Prints, never asserts. Goals (issue #2): first scan <= 2x the bare walk; rescan < 1 s.
    .venv/bin/python bench/scan.py [--models 10000] [--folders 200] [--cold]

Both are timed with the files in the page cache: that isolates the scanner's own cost. Then the first
scan's two halves are timed apart: reading and parsing the files, and writing the rows to the database.
--cold (root only: it empties the whole machine's page cache) also times the scan and the walk from the
disk, as a first scan after a boot or of freshly copied models runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import tempfile
import time
from pathlib import Path

from _setup import ROOT, setup_django


def generate(root: Path, models: int, folders: int) -> None:
    import sys

    sys.path.insert(0, str(ROOT))
    from tests.model_files import REFERENCE, safetensors_bytes, write_image

    kohya = json.loads((REFERENCE / "safetensors" / "lora_metadata.json").read_text())
    info = (next((REFERENCE / "civitai").glob("by_hash_*.json"))).read_text()
    preview = root / "_preview.png"
    write_image(preview, (256, 320))
    for i in range(models):
        folder = root / ("loras" if i % 2 else "checkpoints") / f"group_{i % folders:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        base = folder / f"model_{i:05d}"
        metadata = (
            kohya if i % 4 == 0 else {"ss_base_model_version": "sdxl_base_v1-0", "ss_output_name": base.name}
        )
        (base.with_suffix(".safetensors")).write_bytes(safetensors_bytes(metadata, b"\0" * 64))
        if i % 10 == 0:
            shutil.copy(preview, base.with_suffix(".png"))
        if i % 10 == 1:
            (base.parent / (base.name + ".civitai.info")).write_text(info)
        if i % 10 == 2:
            (base.parent / (base.name + ".md")).write_text("# Notes\nTrigger: foo")
    preview.unlink()


def bare_walk(root: Path) -> int:
    """The floor: list every folder, and read each model's header."""
    count = 0
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir():
                    stack.append(entry.path)
                elif entry.name.endswith(".safetensors"):
                    with open(entry.path, "rb") as f:
                        (n,) = struct.unpack("<Q", f.read(8))
                        json.loads(f.read(n))
                    count += 1
    return count


class KeptRows:
    """Takes the rows a scan would write, and keeps them."""

    def __init__(self) -> None:
        self.batches: list[list[dict]] = []

    def write(self, inserts: list[dict], *updates: list) -> None:
        self.batches.append(inserts)


def first_scan_in_two_halves(roots) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """The first scan's reading and parsing of every file, then its writing of the rows, timed apart."""
    from models_app.models import ModelFile
    from models_app.scanner import RowWriter, Scanner

    ModelFile.objects.all().delete()
    kept = KeptRows()
    read_time, _ = timed(Scanner(roots, writer=kept).run)  # type: ignore[arg-type]
    ModelFile.objects.all().delete()
    writer = RowWriter()
    write_time, _ = timed(lambda: [writer.write(batch) for batch in kept.batches])
    return read_time, write_time


def drop_page_cache() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def timed(func, *args, **kwargs):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = func(*args, **kwargs)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--folders", type=int, default=200)
    parser.add_argument("--cold", action="store_true", help="also time both from the disk (root only)")
    args = parser.parse_args()
    tree = Path(tempfile.mkdtemp(prefix="mm-bench-tree-"))
    print(f"generating {args.models} models in {args.folders * 2} folders under {tree} …", flush=True)
    generate(tree, args.models, args.folders)
    setup_django(MM_MODEL_ROOTS=f"checkpoints={tree / 'checkpoints'};loras={tree / 'loras'}")
    from models_app.models import ModelFile
    from models_app.roots import get_roots
    from models_app.scanner import scan_folder

    bare_walk(tree)  # same page cache for both
    walk_time, walked = timed(bare_walk, tree)
    first_time, first = timed(scan_folder, get_roots())
    rescan_time, rescan = timed(scan_folder, get_roots())
    assert walked == first.total == ModelFile.objects.count()
    print(f"bare scandir + header walk: {walk_time:7.3f} s  ({walked} models)")
    print(
        f"first scan:                 {first_time:7.3f} s  ({first.added} added)   ratio {first_time / walk_time:.2f}x the walk (goal <= 2x)"
    )
    print(f"no-change rescan:           {rescan_time:7.3f} s  ({rescan.updated} updated)   goal < 1 s")
    read_time, write_time = first_scan_in_two_halves(get_roots())
    print(
        f"the first scan apart:       reading {read_time:.3f} s ({read_time / walk_time:.2f}x the walk), "
        f"writing the rows {write_time:.3f} s ({write_time / walk_time:.2f}x)"
    )
    if args.cold:
        ModelFile.objects.all().delete()
        drop_page_cache()
        cold_walk_time, _ = timed(bare_walk, tree)
        drop_page_cache()
        cold_scan_time, _ = timed(scan_folder, get_roots())
        print(f"from the disk (cold cache): walk {cold_walk_time:7.3f} s, first scan {cold_scan_time:7.3f} s")
        print(f"                            ratio {cold_scan_time / cold_walk_time:.2f}x the walk")
    shutil.rmtree(tree)


if __name__ == "__main__":
    main()
