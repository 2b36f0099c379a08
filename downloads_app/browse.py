"""Browsing Civitai's models (its `/api/v1/models` search), each marked when the library has it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.conf import settings

from downloads_app.sources.civitai import FOLDER_OF_TYPE
from models_app.civitai_api import IN_A_REQUEST, ask
from models_app.models import ModelFile

PAGE_SIZE = 24
SORTS = ("Most Downloaded", "Highest Rated", "Newest")
# The base models most models are made for, as Civitai names them (it knows many more).
BASE_MODELS = ("SD 1.5", "SDXL 1.0", "Pony", "Illustrious", "NoobAI", "Flux.1 D", "Flux.1 S", "SD 3.5")
# Civitai's older image answers name the level in words; newer ones give the numbers its site filters by.
NSFW_LEVELS = {"None": 1, "Soft": 2, "Mature": 4, "X": 8}


@dataclass(frozen=True)
class CivitaiHit:
    """A Civitai model as its search lists it: its newest version and that version's first image."""

    id: int
    name: str
    type: str
    creator: str
    base_model: str
    downloads: int
    likes: int
    image_url: str
    nsfw_level: int
    in_library: bool
    url: str  # its page on Civitai, which the download dialog takes as a link

    @property
    def folder_type(self) -> str:
        return FOLDER_OF_TYPE.get(self.type, "")


@dataclass(frozen=True)
class CivitaiPage:
    hits: list[CivitaiHit]
    next_cursor: str  # Civitai's own, opaque: "" on the last page


def civitai_models(
    *,
    query: str = "",
    model_type: str = "",
    base_model: str = "",
    sort: str = "",
    safe_only: bool = False,
    cursor: str = "",
) -> CivitaiPage:
    """One page of Civitai's models that match; raises CivitaiUnavailable or LookupFailed, with
    Civitai's reason, when it gives none. `safe_only` leaves out the models Civitai has no safe image
    of, and shows only safe images of the others (its `nsfw=false`)."""
    params = {"limit": str(PAGE_SIZE), "sort": sort if sort in SORTS else SORTS[0]}
    params |= {"query": query.strip()} if query.strip() else {}
    params |= {"types": model_type} if model_type in FOLDER_OF_TYPE else {}
    params |= {"baseModels": base_model} if base_model in BASE_MODELS else {}
    params |= {"nsfw": "false"} if safe_only else {}
    params |= {"cursor": cursor} if cursor else {}
    data = ask(f"/api/v1/models?{urlencode(params)}", lambda: False, patience=IN_A_REQUEST) or {}
    items = [
        item for item in data.get("items") or [] if isinstance(item, dict) and isinstance(item.get("id"), int)
    ]
    had = set(
        ModelFile.objects.filter(civitai_model_id__in=[item["id"] for item in items]).values_list(
            "civitai_model_id", flat=True
        )
    )
    metadata = _object(data.get("metadata"))
    return CivitaiPage(
        [_hit(item, in_library=item["id"] in had) for item in items], str(metadata.get("nextCursor") or "")
    )


def _hit(item: dict[str, Any], *, in_library: bool) -> CivitaiHit:
    versions = [v for v in item.get("modelVersions") or [] if isinstance(v, dict)]
    newest: dict[str, Any] = versions[0] if versions else {}
    images = [
        i for i in newest.get("images") or [] if isinstance(i, dict) and i.get("type", "image") == "image"
    ]
    image = images[0] if images else {}
    stats, creator = _object(item.get("stats")), _object(item.get("creator"))
    level = image.get("nsfwLevel", 4 if item.get("nsfw") else 1)  # unsaid of a model Civitai marks NSFW: R
    return CivitaiHit(
        id=item["id"],
        name=str(item.get("name") or f"Civitai model {item['id']}"),
        type=str(item.get("type") or ""),
        creator=str(creator.get("username") or ""),
        base_model=str(newest.get("baseModel") or ""),
        downloads=int(stats.get("downloadCount") or 0),
        likes=int(stats.get("thumbsUpCount") or 0),
        image_url=str(image.get("url") or ""),
        nsfw_level=level if isinstance(level, int) else NSFW_LEVELS.get(str(level), 1),
        in_library=in_library,
        url=f"{settings.MM_CIVITAI_URL.rstrip('/')}/models/{item['id']}",
    )


def _object(value: object) -> dict[str, Any]:
    """A JSON object of Civitai's answer, or an empty one where it gave something else."""
    return value if isinstance(value, dict) else {}
