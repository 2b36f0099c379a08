"""Hugging Face: repo, tree, blob and resolve URLs at any revision (DESIGN.md §8)."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit

from downloads_app.engine import HttpError
from downloads_app.sources import (
    MODEL_SUFFIXES,
    Endpoints,
    HttpClient,
    Keys,
    RemoteFile,
    RemoteVersion,
    Resolution,
    SourceError,
)
from models_app.text import whole_number

HOSTS = {"huggingface.co", "www.huggingface.co", "hf.co"}
# Words in a repo or file path that tell the ComfyUI folder; the first match wins.
FOLDER_HINTS = (
    ("lora", "loras"),
    ("controlnet", "controlnet"),
    ("vae", "vae"),
    ("text_encoder", "text_encoders"),
    ("t5", "text_encoders"),
    ("clip_vision", "clip_vision"),
    ("clip", "text_encoders"),
    ("upscal", "upscale_models"),
    ("esrgan", "upscale_models"),
    ("unet", "diffusion_models"),
    ("transformer", "diffusion_models"),
    ("flux", "diffusion_models"),
)


def recognises(url: str, endpoints: Endpoints) -> bool:
    host = urlsplit(url).netloc.lower()
    return host in HOSTS or host == urlsplit(endpoints.huggingface).netloc.lower()


def parse(url: str) -> tuple[str, str, str, str]:
    """(repo id, kind: repo|tree|file, revision, path)."""
    path = urlsplit(url).path.strip("/")
    if path.startswith(("datasets/", "spaces/")):
        raise SourceError("That is a Hugging Face dataset or space, not a model repository.")
    parts = path.split("/")
    if len(parts) < 2:
        raise SourceError("This Hugging Face link does not name a repository (huggingface.co/owner/name).")
    repo = "/".join(parts[:2])
    if len(parts) == 2:
        return repo, "repo", "main", ""
    if len(parts) >= 4 and parts[2] in {"resolve", "blob"} and len(parts) >= 5:
        return repo, "file", unquote(parts[3]), unquote("/".join(parts[4:]))
    if parts[2] == "tree" and len(parts) >= 4:
        return repo, "tree", unquote(parts[3]), unquote("/".join(parts[4:]))
    raise SourceError("This Hugging Face link is not a repository, folder or file link.")


def suggest_folder(*paths: str) -> str:
    text = " ".join(paths).lower()
    return next((folder for hint, folder in FOLDER_HINTS if hint in text), "")


# The names diffusers and transformers give the weights in every repository: saved as they are, the VAE
# of one model would clash with another's in ComfyUI's vae folder, and neither would say whose it is.
GENERIC_STEMS = ("diffusion_pytorch_model", "pytorch_model", "model")


def name_to_save(repo: str, path: str) -> str:
    """The file's own name, or for a generic one the repository's name and the file's folder instead of
    the generic part: `sdxl-base/vae/diffusion_pytorch_model.fp16.safetensors` → `sdxl-base_vae.fp16.safetensors`."""
    folder, _, name = path.rpartition("/")
    stem = next((stem for stem in GENERIC_STEMS if name.startswith(stem + ".")), None)
    if stem is None:
        return name
    return "_".join([repo.rsplit("/", 1)[-1], *folder.split("/")]).strip("_") + name[len(stem) :]


def resolve_url(base: str, repo: str, revision: str, path: str) -> str:
    return f"{base}/{repo}/resolve/{quote(revision, safe='')}/{quote(path)}"


def blob_url(base: str, repo: str, revision: str, path: str) -> str:
    """The file's page, for a person."""
    return f"{base}/{repo}/blob/{quote(revision, safe='')}/{quote(path)}"


def resolve(url: str, *, endpoints: Endpoints, keys: Keys, client: HttpClient) -> Resolution:
    base = endpoints.huggingface.rstrip("/")
    repo, kind, revision, path = parse(url)
    try:
        if kind == "file":
            files = [_head_file(client, base, repo, revision, path, keys)]
        else:
            files = _list_files(client, base, repo, revision, path, keys)
    except HttpError as error:
        raise SourceError(explain(error, has_key=bool(keys.huggingface))) from None
    if not files:
        where = f"{repo}/{path}" if path else repo
        raise SourceError(f"No model files (.safetensors, .gguf, .ckpt…) in {where} at {revision}.")
    version = RemoteVersion(
        id=revision,
        name=revision,
        files=files,
        page_url=f"{base}/{repo}/tree/{quote(revision, safe='')}/{path}".rstrip("/"),
    )
    return Resolution(
        platform="huggingface",
        url=url,
        title=repo,
        versions=[version],
        folder_type=suggest_folder(repo, path),
        selected_version=revision,
    )


def _head_file(client: HttpClient, base: str, repo: str, revision: str, path: str, keys: Keys) -> RemoteFile:
    url = resolve_url(base, repo, revision, path)
    response = client.get(url, key=keys.huggingface, allow_redirects=False, stream=True)
    response.close()
    size = response.headers.get("X-Linked-Size") or response.headers.get("Content-Length")
    etag = (response.headers.get("X-Linked-Etag") or "").strip('"')
    return RemoteFile(
        id=path,
        name=path.rsplit("/", 1)[-1],
        download_url=url,
        size=whole_number(size or ""),
        sha256=etag.lower() if re.fullmatch(r"[0-9a-fA-F]{64}", etag) else "",
        variant=path.rsplit("/", 1)[0] if "/" in path else "",
        primary=True,
        folder_type=suggest_folder(path.rpartition("/")[0]),
        save_as=name_to_save(repo, path),
    )


def _list_files(
    client: HttpClient, base: str, repo: str, revision: str, folder: str, keys: Keys
) -> list[RemoteFile]:
    url: str | None = f"{base}/api/models/{repo}/tree/{quote(revision, safe='')}/{quote(folder)}".rstrip("/")
    params: dict[str, str] | None = {"recursive": "true"}
    files = []
    for _page in range(200):  # a repo of 200 pages is not one a person picks a file from
        if url is None:
            break
        response = client.get(url, key=keys.huggingface, params=params)
        for entry in response.json():
            path = str(entry.get("path", ""))
            if entry.get("type") != "file" or not path.lower().endswith(MODEL_SUFFIXES):
                continue
            lfs = entry.get("lfs") or {}
            files.append(
                RemoteFile(
                    id=path,
                    name=path.rsplit("/", 1)[-1],
                    download_url=resolve_url(base, repo, revision, path),
                    size=int(lfs.get("size") or entry.get("size") or 0) or None,
                    sha256=str(lfs.get("oid") or "").lower(),
                    variant=path.rsplit("/", 1)[0] if "/" in path else "",
                    # A diffusers-style repo keeps each part in a folder named after it (vae/, unet/…);
                    # the file's own name says less (flux1-schnell-fp8 may be a checkpoint or a unet).
                    folder_type=suggest_folder(path.rpartition("/")[0]),
                    save_as=name_to_save(repo, path),
                )
            )
        url = response.links.get("next", {}).get("url")
        params = None  # the next link carries them
    if files:
        files[0].primary = True
    return files


def explain(error: HttpError, *, has_key: bool) -> str:
    code = error.headers.get("X-Error-Code", "")
    if code == "GatedRepo" and error.status == 401:
        if has_key:
            return "This repository is gated and your Hugging Face token was refused: check it in Settings."
        return "This repository is gated: add a Hugging Face token in Settings, and accept its terms on huggingface.co."
    if code == "GatedRepo":
        return "You have not been granted access to this gated repository yet: request access on its Hugging Face page."
    if code == "RepoNotFound" or (error.status == 401 and not code):
        return "Hugging Face has no such repository (or it is private and needs a token)."
    if code == "RevisionNotFound":
        return "That branch, tag or commit does not exist in this Hugging Face repository."
    if code == "EntryNotFound" or error.status == 404:
        return "That file does not exist in this Hugging Face repository at that revision."
    return explain_refusal(error, has_key=has_key)


def explain_refusal(error: HttpError, *, has_key: bool) -> str:
    """What the hub's refusal says, whatever was asked of it."""
    if error.status == 401:
        return (
            "Your Hugging Face token was refused: check it in Settings."
            if has_key
            else "Hugging Face asks for a token: add one in Settings."
        )
    if error.status == 403:
        return "Hugging Face refused access to this file (403)."
    if error.status == 429:
        return "Hugging Face is rate-limiting requests (429): try again in a minute."
    return f"Hugging Face answered HTTP {error.status}."
