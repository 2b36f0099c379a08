"""From a URL the user pasted to the files that can be downloaded (Civitai, Hugging Face, any URL).

Knows nothing of Django: base URLs and keys come in as arguments, so tests point it at the fake upstream.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from downloads_app.engine import USER_AGENT, HttpError, describe_request_error
from models_app.extensions import MODEL_EXTENSIONS

logger = logging.getLogger("mm.downloads")

TIMEOUT = (10, 30)
MODEL_SUFFIXES = tuple(MODEL_EXTENSIONS)  # for str.endswith


class SourceError(Exception):
    """A message for the user: the link is not understood, or the service said no."""


class ServiceUnreachable(SourceError):
    """The service could not be reached at all: no connection, no answer in time."""


@dataclass(frozen=True)
class Endpoints:
    civitai: str = "https://civitai.com"
    huggingface: str = "https://huggingface.co"


@dataclass(frozen=True)
class Keys:
    civitai: str = ""
    huggingface: str = ""


@dataclass
class RemoteFile:
    id: str
    name: str
    download_url: str
    size: int | None = None
    sha256: str = ""
    kind: str = "Model"
    format: str = ""
    precision: str = ""
    variant: str = ""
    primary: bool = False
    folder_type: str = ""  # the ComfyUI folder its own path suggests (a repo's vae/ file), "" for none
    save_as: str = ""  # the file name a download gets unless the user gives one; by default `name`

    def __post_init__(self) -> None:
        self.save_as = self.save_as or self.name

    @property
    def is_model(self) -> bool:
        """Whether ComfyUI can load it: not a version's training data or config (a .zip, a .yaml)."""
        return self.name.lower().endswith(MODEL_SUFFIXES)

    @property
    def label(self) -> str:
        details = " · ".join(
            d
            for d in (self.kind if self.kind != "Model" else "", self.format, self.variant, self.precision)
            if d
        )
        return f"{self.name} ({details})" if details else self.name


@dataclass
class RemoteVersion:
    id: str
    name: str
    files: list[RemoteFile]
    base_model: str = ""
    trained_words: list[str] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    description_html: str = ""
    info: dict[str, Any] = field(default_factory=dict)  # the API's JSON, saved as <base>.civitai.info
    page_url: str = ""

    @property
    def preview_url(self) -> str:
        for image in self.images:
            if image.get("type", "image") == "image" and image.get("url"):
                return str(image["url"])
        return ""


@dataclass
class Resolution:
    platform: str  # civitai | huggingface | direct
    url: str
    title: str
    versions: list[RemoteVersion]
    folder_type: str = ""  # suggested ComfyUI folder type, "" when the user must choose
    model_type: str = ""
    description_html: str = ""
    nsfw: bool = False
    selected_version: str = ""
    selected_file: str = ""

    @property
    def platform_label(self) -> str:
        return {"civitai": "Civitai", "huggingface": "Hugging Face"}.get(self.platform, "Direct link")

    def version(self, version_id: str | None = None) -> RemoteVersion:
        wanted = version_id or self.selected_version
        for version in self.versions:
            if version.id == wanted:
                return version
        return self.versions[0]

    def description_html_of(self, version: RemoteVersion) -> str:
        """What the `.md` beside a download holds: the version's notes, else the model's description."""
        return version.description_html or self.description_html

    def folder_type_of(self, remote: RemoteFile) -> str:
        """The ComfyUI folder suggested for `remote`: its own, else the whole link's, else ""."""
        return remote.folder_type or self.folder_type

    def file(self, version: RemoteVersion, file_id: str | None = None) -> RemoteFile:
        wanted = file_id or self.selected_file
        for remote in version.files:
            if remote.id == wanted:
                return remote
        models = [f for f in version.files if f.is_model] or version.files
        return next((f for f in models if f.primary), models[0])


class HttpClient:
    """GETs JSON from a service, with its key sent to that service's origin only."""

    def __init__(self, session: requests.Session | None = None) -> None:
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT

    def get(self, url: str, *, key: str = "", **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        try:
            response = self.session.get(url, headers=headers, timeout=TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            raise ServiceUnreachable(
                f"{urlsplit(url).netloc} cannot be reached: {describe_request_error(exc)}."
            ) from None
        if response.status_code >= 400:
            raise HttpError(response.status_code, url, dict(response.headers), response.text[:4000])
        return response


NOT_A_LINK = "That is not a link: paste an http(s) address, a Civitai link or a Hugging Face link."


def resolve(url: str, *, endpoints: Endpoints, keys: Keys, client: HttpClient | None = None) -> Resolution:
    from downloads_app.sources import civitai, direct, huggingface

    url = url.strip()
    client = client or HttpClient()
    if not url:
        raise SourceError("Paste a Civitai or Hugging Face link, or any http(s) address of a model file.")
    try:
        urlsplit(url)
    except ValueError:  # an unclosed IPv6 bracket, a port that is not a number
        raise SourceError(NOT_A_LINK) from None
    for source in (civitai, huggingface):
        if source.recognises(url, endpoints):
            try:
                return source.resolve(url, endpoints=endpoints, keys=keys, client=client)
            except (ValueError, TypeError, KeyError, AttributeError):
                # The service answered, but not in the shape its documentation gives (DESIGN.md §7, §8).
                logger.exception("could not read the answer for %s", url)
                service = "Civitai" if source is civitai else "Hugging Face"
                raise SourceError(f"{service}'s answer could not be read; the log says more.") from None
    return direct.resolve(url, client=client)


def platform_of(url: str, endpoints: Endpoints) -> str:
    from downloads_app.sources import civitai, huggingface

    if civitai.recognises(url, endpoints):
        return "civitai"
    if huggingface.recognises(url, endpoints):
        return "huggingface"
    return "direct"


def auth_for(platform: str, *, endpoints: Endpoints, keys: Keys) -> dict[str, str]:
    """Origin → Authorization header for the engine: a key goes to its own service's host only."""
    from downloads_app.engine import origin

    if platform == "civitai" and keys.civitai:
        return {origin(endpoints.civitai): f"Bearer {keys.civitai}"}
    if platform == "huggingface" and keys.huggingface:
        return {origin(endpoints.huggingface): f"Bearer {keys.huggingface}"}
    return {}


def explain(error: HttpError, *, platform: str, keys: Keys) -> str:
    """The words a user reads for a refused request: each service and status has its own."""
    from downloads_app.sources import civitai, huggingface

    if platform == "civitai":
        return civitai.explain(error, has_key=bool(keys.civitai))
    if platform == "huggingface":
        return huggingface.explain(error, has_key=bool(keys.huggingface))
    host = urlsplit(error.url).netloc
    return {
        401: f"{host} asks for a login (401).",
        403: f"{host} refused access (403).",
        404: f"{host} has no file at that address (404).",
        410: f"{host} says the file is gone (410).",
    }.get(error.status, f"{host} answered HTTP {error.status}.")
