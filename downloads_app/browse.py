"""Browsing Civitai's models (its `/api/v1/models` search), each marked when the library has it, and
Hugging Face's (the hub's `/api/models`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from django.conf import settings
from django.db.models import Q

from downloads_app.engine import HttpError
from downloads_app.models import DownloadedFile, Platform
from downloads_app.sources import HttpClient, SourceError, huggingface
from downloads_app.sources.civitai import FOLDER_OF_TYPE
from models_app.civitai_api import IN_A_REQUEST, ask
from models_app.models import ModelFile

PAGE_SIZE = 24
SORTS = ("Most Downloaded", "Highest Rated", "Newest")
# The window Civitai counts downloads and ratings over, for those orders.
PERIODS = {
    "AllTime": "All time",
    "Year": "This year",
    "Month": "This month",
    "Week": "This week",
    "Day": "Today",
}
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
    period: str = "",
    safe_only: bool = False,
    cursor: str = "",
) -> CivitaiPage:
    """One page of Civitai's models that match; raises CivitaiUnavailable or LookupFailed, with
    Civitai's reason, when it gives none. `safe_only` leaves out mature models and images (its
    `nsfw=false`); otherwise they are asked for, since Civitai's documentation of today leaves them out
    unless asked (and its older one kept them in)."""
    params = {"limit": str(PAGE_SIZE), "sort": sort if sort in SORTS else SORTS[0]}
    params |= {"query": query.strip()} if query.strip() else {}
    params |= {"types": model_type} if model_type in FOLDER_OF_TYPE else {}
    params |= {"baseModels": base_model} if base_model in BASE_MODELS else {}
    params |= {"period": period} if period in PERIODS else {}
    params |= {"nsfw": "false" if safe_only else "true"}
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


# The hub's orders, and the tasks and formats its models are tagged with that ComfyUI loads.
HF_SORTS = {
    "Most Downloaded": "downloads",
    "Most Liked": "likes",
    "Trending": "trendingScore",
    "Recently Updated": "lastModified",
}
HF_TASKS = {
    "text-to-image": "Text to image",
    "image-to-image": "Image to image",
    "text-to-video": "Text to video",
    "image-to-video": "Image to video",
    "text-to-audio": "Text to audio",
}
HF_FORMATS = {"safetensors": "safetensors", "gguf": "GGUF"}
# The fields each listed model comes with (the hub's `expand`, as its own JavaScript client asks).
HF_FIELDS = ("pipeline_tag", "private", "gated", "downloads", "likes", "lastModified")


@dataclass(frozen=True)
class HuggingFaceHit:
    repo: str  # owner/name
    task: str
    downloads: int
    likes: int
    url: str  # the repository's page, which the download dialog takes as a link: it lists its files
    gated: bool = False  # its files need a token, and its terms accepted on its page
    private: bool = False
    updated: datetime | None = None  # its last commit
    in_library: bool = False  # a file downloaded from it is in the library

    @property
    def owner(self) -> str:
        return self.repo.partition("/")[0]

    @property
    def name(self) -> str:
        return self.repo.partition("/")[2]

    @property
    def task_label(self) -> str:
        return HF_TASKS.get(self.task, self.task.replace("-", " ").capitalize())


@dataclass(frozen=True)
class HuggingFacePage:
    hits: list[HuggingFaceHit]
    next_cursor: str  # the hub's own, opaque: "" on the last page


def huggingface_models(
    *, query: str = "", task: str = "", file_format: str = "", sort: str = "", cursor: str = ""
) -> HuggingFacePage:
    """One page of the hub's models that match, with the stored token (a private repository of its
    owner's is listed too); raises SourceError, in words, when the hub gives none."""
    from downloads_app.services import endpoints, keys

    params = {"limit": str(PAGE_SIZE), "sort": HF_SORTS.get(sort, "downloads"), "direction": "-1"}
    params |= {"search": query.strip()} if query.strip() else {}
    params |= {"pipeline_tag": task} if task in HF_TASKS else {}
    params |= {"filter": file_format} if file_format in HF_FORMATS else {}
    params |= {"cursor": cursor} if cursor else {}
    asked = [*params.items(), *(("expand", field) for field in HF_FIELDS)]
    base = endpoints().huggingface.rstrip("/")
    token = keys().huggingface
    try:
        response = HttpClient().get(f"{base}/api/models", key=token, params=asked)
        items = response.json()
    except HttpError as error:
        raise SourceError(huggingface.explain_refusal(error, has_key=bool(token))) from None
    except ValueError:
        raise SourceError("Hugging Face's answer could not be read.") from None
    next_url = response.links.get("next", {}).get("url", "")
    # Only the cursor is kept from the link: the next page is asked of the hub's address, not of a link.
    next_cursor = parse_qs(urlsplit(next_url).query).get("cursor", [""])[0]
    repos = [
        item
        for item in (items if isinstance(items, list) else [])
        if isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"].count("/") == 1
    ]
    had = _downloaded_into_library(base, [item["id"] for item in repos])
    hits = [
        HuggingFaceHit(
            repo=item["id"],
            task=str(item.get("pipeline_tag") or ""),
            downloads=_count(item.get("downloads")),
            likes=_count(item.get("likes")),
            url=f"{base}/{item['id']}",
            gated=item.get("gated") in ("auto", "manual"),
            private=item.get("private") is True,
            updated=_when(item.get("lastModified")),
            in_library=item["id"] in had,
        )
        for item in repos
    ]
    return HuggingFacePage(hits, next_cursor)


def _downloaded_into_library(base: str, repos: list[str]) -> set[str]:
    """The repositories a file of the library was downloaded from (kept by its SHA256, as the model's
    dialog says: `…/{repo}/blob/…`)."""
    if not repos:
        return set()
    from_repos = Q()
    for repo in repos:
        from_repos |= Q(page_url__startswith=f"{base}/{repo}/blob/")
    pages = DownloadedFile.objects.filter(
        from_repos,
        platform=Platform.HUGGINGFACE,
        sha256__in=ModelFile.objects.exclude(sha256="").values("sha256"),
    ).values_list("page_url", flat=True)
    return {page[len(base) + 1 :].split("/blob/", 1)[0] for page in pages}


def _count(value: object) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def _when(value: object) -> datetime | None:
    """An ISO 8601 time the hub gives (`2025-01-02T03:04:05.000Z`), or None for anything else."""
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
