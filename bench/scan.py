"""Scan speed: first scan and no-change rescan of 10,000 models against a bare scandir + header walk.

Prints, never asserts. Goals (issue #2): first scan <= 2x the bare walk; rescan < 1 s.
    .venv/bin/python bench/scan.py [--models 10000] [--folders 200] [--runs 5] [--tensors 1] [--cold]

Both are timed with the files in the page cache: that isolates the scanner's own cost. The walk and the
first scan take turns --runs times, and their medians are compared: on a VM whose speed changes from one
second to the next, one run of each can be 20 % off either way. Then the first scan's two halves are
timed apart: reading and parsing the files, and writing the rows to the database.
--tensors gives each LoRA-sized model (a quarter of them, with real kohya metadata) a tensor table of that
many entries, as real LoRAs have (hundreds): the walk parses it, where the scan skips it.
--cold (root only: it empties the whole machine's page cache) also times the scan and the walk from the
disk, as a first scan after a boot or of freshly copied models runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import tempfile
import time
from pathlib import Path

from _setup import ROOT, setup_django


def with_tensor_table(data: bytes, tensors: int) -> bytes:
    """The safetensors file `data` (one tensor) with `tensors` - 1 more entries in its header, named and
    shaped as a kohya LoRA's, each over the same two bytes."""
    (length,) = struct.unpack_from("<Q", data)
    header = json.loads(data[8 : 8 + length])
    for i in range(1, tensors):
        name = f"lora_unet_down_blocks_{i % 3}_attentions_{i % 2}_transformer_blocks_{i}_attn1_to_k.lora_down.weight"
        header[name] = {"dtype": "F16", "shape": [1], "data_offsets": [0, 2]}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data[8 + length :]


def generate(root: Path, models: int, folders: int, tensors: int = 1) -> None:
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
        data = safetensors_bytes(metadata, b"\0" * 64)
        if i % 4 == 0 and tensors > 1:
            data = with_tensor_table(data, tensors)
        (base.with_suffix(".safetensors")).write_bytes(data)
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

    def close(self) -> None:
        pass


def first_scan_in_two_halves(roots) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """The first scan's reading and parsing of every file, then its writing of the rows, timed apart."""
    from models_app.models import ModelFile
    from models_app.row_writer import WriterThread
    from models_app.scanner import Scanner

    ModelFile.objects.all().delete()
    kept = KeptRows()
    read_time, _ = timed(Scanner(roots, writer=kept).run)
    ModelFile.objects.all().delete()

    def write_all() -> None:
        writer = WriterThread()
        for batch in kept.batches:
            writer.write(batch)
        writer.close()

    write_time, _ = timed(write_all)
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
    parser.add_argument("--runs", type=int, default=5, help="turns of the walk and the first scan")
    parser.add_argument("--tensors", type=int, default=1, help="tensor entries in a LoRA's header")
    parser.add_argument("--cold", action="store_true", help="also time both from the disk (root only)")
    args = parser.parse_args()
    tree = Path(tempfile.mkdtemp(prefix="mm-bench-tree-"))
    print(f"generating {args.models} models in {args.folders * 2} folders under {tree} …", flush=True)
    generate(tree, args.models, args.folders, args.tensors)
    setup_django(MM_MODEL_ROOTS=f"checkpoints={tree / 'checkpoints'};loras={tree / 'loras'}")
    from models_app.models import ModelFile
    from models_app.roots import get_roots
    from models_app.scanner import scan_folder

    bare_walk(tree)  # same page cache for both
    walks, firsts, rescans = [], [], []
    for _ in range(args.runs):
        ModelFile.objects.all().delete()
        walk_time, walked = timed(bare_walk, tree)
        first_time, first = timed(scan_folder, get_roots())
        rescan_time, rescan = timed(scan_folder, get_roots())
        assert walked == first.total == first.added == ModelFile.objects.count() and not rescan.updated
        walks.append(walk_time)
        firsts.append(first_time)
        rescans.append(rescan_time)
    walk, first_scan = statistics.median(walks), statistics.median(firsts)
    ratios = sorted(f / w for f, w in zip(firsts, walks, strict=True))
    print(f"bare scandir + header walk: {walk:7.3f} s  ({walked} models; median of {args.runs})")
    print(
        f"first scan:                 {first_scan:7.3f} s  ratio {first_scan / walk:.2f}x the walk (goal <= 2x);"
        f" run by run {ratios[0]:.2f}x to {ratios[-1]:.2f}x"
    )
    print(f"no-change rescan:           {statistics.median(rescans):7.3f} s  goal < 1 s")
    read_time, write_time = first_scan_in_two_halves(get_roots())
    print(
        f"the first scan apart:       reading {read_time:.3f} s ({read_time / walk:.2f}x the walk), "
        f"writing the rows {write_time:.3f} s ({write_time / walk:.2f}x)"
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
