"""Server time of the library page with 10,000 models in the database: median and p95.

Prints, never asserts. Goal (issue #2): p95 < 100 ms for the page and for a filtered search.
The side bar's counts and the filter menus are cached until a model row changes; the "first load after
the library changed" case empties that cache before each request.
    .venv/bin/python bench/library_page.py [--models 10000] [--runs 60]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import UTC, datetime

from _setup import ROOT, setup_django


def populate(count: int) -> None:
    from models_app.models import ModelFile

    kohya = json.loads((ROOT.parent / "shared/reference/safetensors/lora_metadata.json").read_text())
    types = ["checkpoints", "loras", "vae", "embeddings", "controlnet", "upscale_models"]
    bases = ["SD 1.5", "SDXL 1.0", "Flux.1 D", "Pony", ""]
    now = datetime.now(tz=UTC)
    # Civitai's tags: a few common ones and a long tail, as a library with .civitai.info files has.
    tags = [[f"tag{(i * k) % (40 if k < 3 else 2000)}" for k in range(1, 2 + i % 6)] for i in range(count)]
    rows = []
    for i in range(count):
        folder_type = types[i % len(types)]
        sub_folder = f"group_{i % 50:02d}/set_{i % 7}"
        name = f"model_{i:05d}_{['anime', 'photo', 'style', 'pose'][i % 4]}"
        rows.append(
            ModelFile(
                folder_type=folder_type,
                path_index=0,
                relative_path=f"{sub_folder}/{name}.safetensors",
                sub_folder=sub_folder,
                name=name,
                extension=".safetensors",
                size=1_000_000 + i * 7919,
                mtime_ns=int(now.timestamp() * 1e9) - i,
                created_at=now,
                modified_at=now,
                base_model=bases[i % len(bases)],
                preview=f"{name}.png" if i % 3 == 0 else "",
                metadata=kohya if i % 4 == 0 else {"ss_output_name": name, "ss_network_dim": "32"},
                trained_words=[f"trigger{i % 100}", name],
                tags=tags[i],
                labels="\n" + "".join(f"{w}\n" for w in [f"trigger{i % 100}", name, *tags[i]]),
                search_text=f"{name} {sub_folder}/{name}.safetensors {bases[i % len(bases)]} trigger{i % 100}".lower(),
            )
        )
    ModelFile.objects.bulk_create(rows, batch_size=1000)


def measure(client, url: str, headers: dict[str, str], runs: int, *, cold_menus: bool) -> tuple[float, float]:
    from django.core.cache import cache

    client.get(url, headers=headers)  # warm caches and template loading
    times = []
    for _ in range(runs):
        if cold_menus:
            cache.clear()
        start = time.perf_counter()
        response = client.get(url, headers=headers)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args()
    setup_django(
        MM_MODEL_ROOTS="checkpoints=/nonexistent/checkpoints;loras=/nonexistent/loras",
        MM_ALLOWED_HOSTS="testserver",
    )
    from django.contrib.auth import get_user_model
    from django.test import Client

    populate(args.models)
    client = Client()
    client.force_login(get_user_model().objects.create_user("bench", password="x" * 20))
    htmx = {"HX-Request": "true"}
    cases = [  # label, URL, headers, whether the cached menus are emptied before each request
        ("library page (all models, first page)", "/", {}, False),
        ("same, first load after the library changed", "/", {}, True),
        ("library page, sorted by size", "/?sort=-size", {}, False),
        ("type tab (HTMX partial)", "/?type=loras", {**htmx, "HX-Target": "library"}, False),
        ("search as you type (HTMX partial)", "/?q=photo+trigger7", {**htmx, "HX-Target": "grid"}, False),
        (
            "search + type + subfolder",
            "/?type=loras&folder=group_07&q=photo",
            {**htmx, "HX-Target": "grid"},
            False,
        ),
        ("infinite scroll, page 50", "/?page=50", {**htmx, "HX-Target": "grid-more"}, False),
    ]
    print(f"{args.models} models, {args.runs} runs each (server time through Django's full middleware stack)")
    for label, url, headers, cold_menus in cases:
        median, p95 = measure(client, url, headers, args.runs, cold_menus=cold_menus)
        print(f"  {label:<44} median {median:6.1f} ms   p95 {p95:6.1f} ms   (goal p95 < 100 ms)")


if __name__ == "__main__":
    main()
