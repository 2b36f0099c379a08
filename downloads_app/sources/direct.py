"""Any other http(s) URL: one file, named by Content-Disposition or else by the URL's path."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from downloads_app.engine import HttpError, filename_from_disposition
from downloads_app.sources import NOT_A_LINK, HttpClient, RemoteFile, RemoteVersion, Resolution, SourceError
from models_app.text import whole_number


def resolve(url: str, *, client: HttpClient) -> Resolution:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise SourceError(NOT_A_LINK)
    try:
        response = client.get(url, stream=True)  # GET, not HEAD: many file hosts refuse HEAD
        response.close()
    except HttpError as error:
        raise SourceError(f"{parts.netloc} answered HTTP {error.status} for that address.") from None
    name = filename_from_disposition(response.headers.get("Content-Disposition"))
    name = name or unquote(urlsplit(response.url).path.rsplit("/", 1)[-1]) or "download.safetensors"
    length = response.headers.get("Content-Length")
    remote = RemoteFile(
        id="file",
        name=name,
        download_url=url,
        size=whole_number(length or ""),
        primary=True,
    )
    return Resolution(
        platform="direct", url=url, title=name, versions=[RemoteVersion(id="file", name=name, files=[remote])]
    )
