"""Civitai: model pages, version download URLs, AIR ids and bare ids (DESIGN.md §7)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from downloads_app.engine import HttpError
from downloads_app.sources import (
    Endpoints,
    HttpClient,
    Keys,
    RemoteFile,
    RemoteVersion,
    Resolution,
    SourceError,
)
from models_app.text import fit_to_store, whole_number

HOSTS = {"civitai.com", "www.civitai.com", "civitai.green"}
FOLDER_OF_TYPE = {
    "Checkpoint": "checkpoints",
    "LORA": "loras",
    "LoCon": "loras",
    "DoRA": "loras",
    "TextualInversion": "embeddings",
    "VAE": "vae",
    "Controlnet": "controlnet",
    "Upscaler": "upscale_models",
    "Hypernetwork": "hypernetworks",
}
# A version's files of another kind than the model itself: a checkpoint may come with its VAE, or with
# the negative embedding it was made for.
FOLDER_OF_FILE_TYPE = {"VAE": "vae", "Negative": "embeddings"}
AIR_RE = re.compile(r"urn:air:[^:]+:[^:]+:civitai:(\d+)@(\d+)", re.IGNORECASE)


def recognises(url: str, endpoints: Endpoints) -> bool:
    if whole_number(url) is not None or AIR_RE.fullmatch(url):
        return True
    host = urlsplit(url).netloc.lower()
    return host in HOSTS or host == urlsplit(endpoints.civitai).netloc.lower()


def parse(url: str) -> tuple[int | None, int | None, dict[str, str]]:
    """(model id, version id, file query) of a Civitai link."""
    if (model_id := whole_number(url)) is not None:
        return model_id, None, {}
    if m := AIR_RE.fullmatch(url):
        return int(m[1]), int(m[2]), {}
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    if m := re.fullmatch(r"/api/download/models/(\d+)/?", parts.path):
        file_query = {k: v for k, v in query.items() if k in {"type", "format", "size", "fp"}}
        return None, int(m[1]), file_query
    if m := re.fullmatch(r"/models/(\d+)(?:/[^/]*)?/?", parts.path):
        version = query.get("modelVersionId")
        return int(m[1]), whole_number(version or ""), {}
    raise SourceError("This Civitai link is not a model page (civitai.com/models/…) or a download link.")


def _file(version_id: int, data: dict[str, Any], base: str) -> RemoteFile:
    metadata = data.get("metadata") or {}
    size_kb = data.get("sizeKB")
    return RemoteFile(
        id=str(data.get("id") or data.get("name")),
        name=str(data.get("name") or f"civitai-{version_id}.safetensors"),
        download_url=str(data.get("downloadUrl") or f"{base}/api/download/models/{version_id}"),
        size=int(size_kb * 1024) if isinstance(size_kb, int | float) else None,
        sha256=str((data.get("hashes") or {}).get("SHA256") or "").lower(),
        kind=str(data.get("type") or "Model"),
        format=str(metadata.get("format") or ""),
        precision=str(metadata.get("fp") or ""),
        variant=str(metadata.get("size") or ""),
        primary=bool(data.get("primary")),
        folder_type=FOLDER_OF_FILE_TYPE.get(str(data.get("type")), ""),
    )


def _version(data: dict[str, Any], model_id: int, base: str) -> RemoteVersion:
    version_id = int(data["id"])
    files = [_file(version_id, f, base) for f in data.get("files") or []]
    if not files:
        files = [
            RemoteFile(
                id="default",
                name=f"civitai-{version_id}.safetensors",
                download_url=f"{base}/api/download/models/{version_id}",
                primary=True,
            )
        ]
    return RemoteVersion(
        id=str(version_id),
        name=str(data.get("name") or version_id),
        files=files,
        base_model=str(data.get("baseModel") or ""),
        trained_words=[str(w) for w in data.get("trainedWords") or []],
        images=[i for i in data.get("images") or [] if isinstance(i, dict)],
        description_html=str(data.get("description") or ""),
        info=data,
        page_url=f"{base}/models/{model_id}?modelVersionId={version_id}",
    )


def resolve(url: str, *, endpoints: Endpoints, keys: Keys, client: HttpClient) -> Resolution:
    base = endpoints.civitai.rstrip("/")
    model_id, version_id, file_query = parse(url)
    try:
        if model_id is None:
            version_data = client.get(f"{base}/api/v1/model-versions/{version_id}", key=keys.civitai).json()
            model_id = int(version_data["modelId"])
        # Descriptions are the uploaders' own text: a stray NUL or half an emoji in one would make the
        # database refuse the task.
        model = fit_to_store(client.get(f"{base}/api/v1/models/{model_id}", key=keys.civitai).json())
    except HttpError as error:
        raise SourceError(explain(error, has_key=bool(keys.civitai))) from None
    except (ValueError, KeyError):
        raise SourceError("Civitai's answer could not be read.") from None
    versions = []
    for data in model.get("modelVersions") or []:
        version = _version(data, model_id, base)
        # The .civitai.info other tools expect is the by-hash/version answer: it names its model.
        version.info = {
            **data,
            "modelId": model_id,
            "model": {"name": model.get("name"), "type": model.get("type"), "nsfw": model.get("nsfw", False)},
        }
        versions.append(version)
    if not versions:
        raise SourceError("This Civitai model has no version to download.")
    resolution = Resolution(
        platform="civitai",
        url=url,
        title=str(model.get("name") or f"Civitai model {model_id}"),
        versions=versions,
        folder_type=FOLDER_OF_TYPE.get(str(model.get("type")), ""),
        model_type=str(model.get("type") or ""),
        description_html=str(model.get("description") or ""),
        nsfw=bool(model.get("nsfw")),
        selected_version=str(version_id) if version_id else versions[0].id,
    )
    if file_query:
        for remote in resolution.version().files:
            offered = {k: v[0] for k, v in parse_qs(urlsplit(remote.download_url).query).items()}
            if all(offered.get(k) == v for k, v in file_query.items()):
                resolution.selected_file = remote.id
    return resolution


def explain(error: HttpError, *, has_key: bool) -> str:
    data = error.json()
    message = str(data.get("message") or "")
    if error.status == 401:
        if "disabled downloads" in message:
            return "The creator of this model has disabled downloads on Civitai."
        if has_key:
            return "Your Civitai key was refused: check it in Settings."
        return "This model needs a Civitai API key: add one in Settings."
    if error.status == 403:
        if data.get("error") == "Early Access":
            deadline = str(data.get("deadline") or "")[:10]
            until = f" until {deadline}" if deadline else ""
            return f"This version is in Early Access on Civitai{until}: it can only be downloaded after that, or with Buzz on civitai.com."
        return "Civitai refused access to this file (403): your account may not have access to it."
    if error.status == 404:
        return "Civitai has no such model or file (404)."
    if error.status == 410:
        return "This model is archived on Civitai and can no longer be downloaded (410)."
    if error.status == 429:
        return "Civitai is rate-limiting requests (429): try again in a minute."
    return f"Civitai answered HTTP {error.status}."
