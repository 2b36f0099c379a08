"""A fake Civitai and Hugging Face: a real threaded HTTP server that answers as DESIGN.md §7, §8 and §11
describe, so downloads are tested over real sockets. A test tool: production code never imports it.

Three listening sockets play three hosts: "civitai" (its API and site), "hf" (the Hugging Face hub) and
"storage" (Civitai's signed storage URLs and Hugging Face's CDN). A request that carries an
Authorization header to the storage gets 400, as Civitai's storage answers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CHUNK = 256 * 1024


@dataclass
class Fault:
    """Misbehaviour of the storage for one file, used up as it happens."""

    drop_after: int | None = None  # close the connection after sending this many body bytes
    drops: int = 1  # how many responses drop
    stall_after: int | None = None  # stop sending (connection open) after this many bytes
    stall_seconds: float = 0.0
    stalls: int = 1
    throttle: int | None = None  # bytes per second
    statuses: list[int] = field(default_factory=list)  # answer these statuses first, one per request
    retry_after: int = 1


@dataclass
class StoredFile:
    key: str
    name: str
    path: Path
    sha256: str = ""
    etag: str = ""
    size: int = 0

    def refresh(self) -> None:
        digest = hashlib.sha256()
        with self.path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        self.sha256 = digest.hexdigest()
        self.size = self.path.stat().st_size
        self.etag = f'"{self.sha256[:32]}-{time.monotonic_ns()}"'


@dataclass
class CivitaiVersion:
    id: int
    name: str
    files: list[tuple[StoredFile, dict[str, Any]]]  # file and its extra JSON (type, metadata, primary)
    base_model: str = "SDXL 1.0"
    trained_words: list[str] = field(default_factory=list)
    access: str = "public"  # public | login | disabled | early_access | no_access | archived
    images: list[dict[str, Any]] = field(default_factory=list)
    description: str = ""


@dataclass
class CivitaiModel:
    id: int
    name: str
    type: str
    versions: list[CivitaiVersion]
    description: str = ""
    nsfw: bool = False
    tags: list[str] = field(default_factory=list)


@dataclass
class HfRepo:
    repo: str
    commit: str
    files: dict[str, StoredFile]  # path in repo -> file
    revisions: tuple[str, ...] = ("main",)
    gated: bool = False
    # What the hub's list of models gives of it.
    downloads: int = 0
    likes: int = 0
    pipeline_tag: str = ""
    tags: tuple[str, ...] = ("safetensors",)
    private: bool = False  # listed all the same: the fake hub has one user, whose token lists them
    last_modified: str = "2025-01-02T03:04:05.000Z"


@dataclass
class RecordedRequest:
    host: str  # "civitai", "hf" or "storage"
    method: str
    path: str
    headers: dict[str, str]
    status: int = 0
    body_bytes: int = 0


class FakeUpstream:
    def __init__(self, data_dir: Path, *, civitai_keys: tuple[str, ...] = ("civitai-good-key",)) -> None:
        self.data_dir = data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.civitai_keys = set(civitai_keys)
        self.hf_tokens: set[str] = {"hf_good_token"}
        self.models: dict[int, CivitaiModel] = {}
        self.versions: dict[int, tuple[CivitaiModel, CivitaiVersion]] = {}
        self.repos: dict[str, HfRepo] = {}
        self.files: dict[str, StoredFile] = {}
        self.faults: dict[str, Fault] = {}
        self.requests: list[RecordedRequest] = []
        self.tree_page_size = 50
        # Answered first on by-hash lookups, in turn: 429 (with Retry-After: 1) or any error status.
        self.by_hash_statuses: list[int] = []
        self.models_list_statuses: list[int] = []  # the same, for the list of models
        # Each by-hash answer waits this long, so that lookups asked together overlap; the most that
        # were in flight at once is counted.
        self.by_hash_hold = 0.0
        self.by_hash_in_flight = 0
        self.by_hash_most_at_once = 0
        self.lock = threading.Lock()
        self.civitai = _Server(self, "civitai")
        self.hf = _Server(self, "hf")
        self.storage = _Server(self, "storage")
        self.servers = (self.civitai, self.hf, self.storage)

    # -- addresses -------------------------------------------------------------------------------
    @property
    def civitai_url(self) -> str:
        return f"http://127.0.0.1:{self.civitai.server_address[1]}"

    @property
    def hf_url(self) -> str:
        return f"http://127.0.0.1:{self.hf.server_address[1]}"

    @property
    def storage_url(self) -> str:
        return f"http://127.0.0.1:{self.storage.server_address[1]}"

    def start(self) -> FakeUpstream:
        for server in self.servers:
            threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                daemon=True,
                name=f"fake-{server.role}",
            ).start()
        return self

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()

    # -- catalogue -------------------------------------------------------------------------------
    def add_file(self, key: str, name: str, content: bytes) -> StoredFile:
        path = self.data_dir / key
        path.write_bytes(content)
        stored = StoredFile(key=key, name=name, path=path)
        stored.refresh()
        self.files[key] = stored
        return stored

    def add_large_file(self, key: str, name: str, size: int) -> StoredFile:
        """A file of `size` bytes of a repeating pseudo-random block, written in 1 MiB pieces."""
        path = self.data_dir / key
        block = hashlib.sha256(key.encode()).digest() * (1 << 15)  # 1 MiB
        with path.open("wb") as f:
            for start in range(0, size, len(block)):
                f.write(block[: min(len(block), size - start)])
        stored = StoredFile(key=key, name=name, path=path)
        stored.refresh()
        self.files[key] = stored
        return stored

    def replace_content(self, key: str, content: bytes) -> None:
        """The file changes upstream: new bytes, new ETag."""
        stored = self.files[key]
        stored.path.write_bytes(content)
        stored.refresh()

    def add_civitai_model(self, model: CivitaiModel) -> None:
        self.models[model.id] = model
        for version in model.versions:
            self.versions[version.id] = (model, version)

    def add_hf_repo(self, repo: HfRepo) -> None:
        self.repos[repo.repo] = repo

    def full_body_requests(self, key: str) -> int:
        """How many times the storage sent a file from its first byte (the download-once check)."""
        return sum(
            1
            for r in self.requests
            if r.host == "storage"
            and r.path.split("?")[0].endswith("/" + key)
            and r.status == 200
            and r.method == "GET"
        )

    def storage_requests(self, key: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.host == "storage" and r.path.split("?")[0].endswith("/" + key)]

    # -- JSON of the Civitai API -----------------------------------------------------------------
    def file_json(self, version: CivitaiVersion, stored: StoredFile, extra: dict[str, Any]) -> dict[str, Any]:
        sha = stored.sha256.upper()
        query = urllib.parse.urlencode({k: v for k, v in extra.get("query", {}).items()})
        return {
            "id": abs(hash(stored.key)) % 10_000_000,
            "sizeKB": stored.size / 1024,
            "name": stored.name,
            "type": extra.get("type", "Model"),
            "pickleScanResult": "Success",
            "virusScanResult": "Success",
            "metadata": extra.get("metadata", {"format": "SafeTensor", "size": "pruned", "fp": "fp16"}),
            "hashes": {"AutoV2": sha[:10], "SHA256": sha, "CRC32": "00000000", "BLAKE3": "0" * 64},
            "downloadUrl": f"{self.civitai_url}/api/download/models/{version.id}"
            + (f"?{query}" if query else ""),
            "primary": extra.get("primary", False),
        }

    def version_json(
        self, model: CivitaiModel, version: CivitaiVersion, *, with_model: bool
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": version.id,
            "modelId": model.id,
            "name": version.name,
            "baseModel": version.base_model,
            "trainedWords": version.trained_words,
            "description": version.description,
            "files": [self.file_json(version, f, extra) for f, extra in version.files],
            "images": version.images,
            "downloadUrl": f"{self.civitai_url}/api/download/models/{version.id}",
            "earlyAccessEndsAt": "2030-01-15T00:00:00.000Z" if version.access == "early_access" else None,
        }
        if with_model:
            data["model"] = {"name": model.name, "type": model.type, "nsfw": model.nsfw, "poi": False}
        return data

    def model_json(self, model: CivitaiModel) -> dict[str, Any]:
        return {
            "id": model.id,
            "name": model.name,
            "description": model.description,
            "type": model.type,
            "nsfw": model.nsfw,
            "tags": model.tags,
            "creator": {"username": "fake-creator"},
            # Newest first, as Civitai lists them, each with its place on the model's page.
            "modelVersions": [
                {**self.version_json(model, v, with_model=False), "index": i, "status": "Published"}
                for i, v in enumerate(model.versions)
            ],
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: FakeUpstream, role: str) -> None:
        self.upstream = upstream
        self.role = role
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up mid-body are what the fault tests are about


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # -- plumbing ----------------------------------------------------------------------------------
    def _record(self) -> RecordedRequest:
        record = RecordedRequest(self.server.role, self.command, self.path, dict(self.headers.items()))
        with self.server.upstream.lock:
            self.server.upstream.requests.append(record)
        return record

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    @staticmethod
    def _downloads(model: CivitaiModel) -> int:
        return 1000 * model.id % 99_991

    @contextlib.contextmanager
    def _in_flight(self) -> Iterator[None]:
        up = self.server.upstream
        with up.lock:
            up.by_hash_in_flight += 1
            up.by_hash_most_at_once = max(up.by_hash_most_at_once, up.by_hash_in_flight)
        try:
            time.sleep(up.by_hash_hold)
            yield
        finally:
            with up.lock:
                up.by_hash_in_flight -= 1

    def _civitai_by_hash(self, sha256: str) -> None:
        up = self.server.upstream
        if (key := self._bearer()) and key not in up.civitai_keys:
            return self._json(401, {"error": "Unauthorized"})
        if up.by_hash_statuses:
            status = up.by_hash_statuses.pop(0)
            if status == 429:
                return self._json(429, {"error": "Too many requests"}, {"Retry-After": "1"})
            return self._json(status, {"error": "Internal server error"})
        # Civitai takes any hash it lists (AutoV2, the first 10 digits of the SHA256, as A1111 writes it).
        for model, version in up.versions.values():
            if any(sha256.upper() in (f.sha256.upper(), f.sha256.upper()[:10]) for f, _ in version.files):
                return self._json(200, up.version_json(model, version, with_model=True))
        return self._json(404, {"error": "Model not found"})

    def _civitai_models(self, params: dict[str, str]) -> None:
        """Civitai's list of models: a search of their names, one type, newest or most downloaded first
        (over a period it checks but, knowing no dates, does not apply), mature models only with
        `nsfw=true`, and pages by an opaque cursor (a query refuses `page`, as Civitai does)."""
        up = self.server.upstream
        if up.models_list_statuses and up.models_list_statuses.pop(0) == 429:
            return self._json(429, {"error": "Too many requests"}, {"Retry-After": "1"})
        if params.get("period", "AllTime") not in ("AllTime", "Year", "Month", "Week", "Day"):
            return self._json(400, {"error": f"Invalid enum value for period: {params['period']}"})
        query = params.get("query", "").lower()
        if query and "page" in params:
            return self._json(
                400, {"error": "Cannot use page param with query search. Use cursor-based pagination."}
            )
        models = [
            m for m in up.models.values()
            if query in m.name.lower() and params.get("types", m.type) == m.type
            and (params.get("nsfw") == "true" or not m.nsfw)  # mature models only when asked for
            and params.get("baseModels", "") in ("", *(v.base_model for v in m.versions))
        ]  # fmt: skip
        if params.get("sort") == "Newest":
            models.sort(key=lambda m: -m.id)
        elif params.get("sort") == "Most Downloaded":
            models.sort(key=lambda m: -self._downloads(m))
        limit = int(params.get("limit", "100"))
        start = int(params.get("cursor", "0|x").split("|")[0])
        metadata: dict[str, Any] = {"pageSize": limit}
        if start + limit < len(models):
            metadata["nextCursor"] = f"{start + limit}|{models[start + limit].id}"
        items = [
            {
                **up.model_json(m),
                "stats": {"downloadCount": 1000 * m.id % 99_991, "thumbsUpCount": m.id % 997},
            }
            for m in models[start : start + limit]
        ]
        return self._json(200, {"items": items, "metadata": metadata})

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), {"Content-Type": "application/json", **(headers or {})})

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        record = self._record()
        self.record = record
        path, _, query = self.path.partition("?")
        params = dict(urllib.parse.parse_qsl(query))
        try:
            if self.server.role == "storage":
                self._storage(path)
            elif self.server.role == "hf":
                self._hf(path, params)
            else:
                self._civitai(path, params)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def send_response(self, code: int, message: str | None = None) -> None:
        if hasattr(self, "record"):
            self.record.status = code
        super().send_response(code, message)

    def _bearer(self) -> str:
        return self.headers.get("Authorization", "").removeprefix("Bearer ").strip()

    # -- Civitai ---------------------------------------------------------------------------------------
    def _civitai(self, path: str, params: dict[str, str]) -> None:
        up = self.server.upstream
        if path == "/api/v1/models":
            return self._civitai_models(params)
        if m := re.fullmatch(r"/api/v1/models/(\d+)", path):
            model = up.models.get(int(m[1]))
            if model is None:
                return self._json(404, {"error": f"No model with id {m[1]}"})
            return self._json(200, up.model_json(model))
        if m := re.fullmatch(r"/api/v1/model-versions/(\d+)", path):
            found = up.versions.get(int(m[1]))
            if found is None:
                return self._json(404, {"error": "Model not found"})
            return self._json(200, up.version_json(*found, with_model=True))
        if m := re.fullmatch(r"/api/v1/model-versions/by-hash/(\w+)", path):
            with self._in_flight():
                return self._civitai_by_hash(m[1])
        if m := re.fullmatch(r"/api/download/models/(\d+)", path):
            return self._civitai_download(int(m[1]), params)
        if m := re.fullmatch(r"/images/([\w.-]+)\.png", path):
            return self._send(200, _preview_png(m[1]), {"Content-Type": "image/png"})
        self._json(404, {"error": "Not found"})

    # -- the Hugging Face hub ------------------------------------------------------------------------
    def _hf(self, path: str, params: dict[str, str]) -> None:
        if path == "/api/models":
            return self._hf_models(params)
        if m := re.fullmatch(r"/api/models/(.+?/.+?)/tree/([^/]+)(?:/(.*))?", path):
            return self._hf_tree(urllib.parse.unquote(m[1]), m[2], m[3] or "", params)
        if m := re.fullmatch(r"/(.+?/.+?)/(resolve|blob)/([^/]+)/(.+)", path):
            return self._hf_resolve(urllib.parse.unquote(m[1]), m[3], urllib.parse.unquote(m[4]))
        self._hf_error(404, "RepoNotFound", "Not found")

    def _civitai_download(self, version_id: int, params: dict[str, str]) -> None:
        up = self.server.upstream
        found = up.versions.get(version_id)
        if found is None:
            return self._json(404, {"error": "File not found"})
        _, version = found
        key = self._bearer()
        if key and key not in up.civitai_keys:
            return self._json(401, {"error": "Unauthorized"})
        if version.access == "login" and not key:
            return self._json(
                401,
                {
                    "error": "Unauthorized",
                    "message": "The creator of this asset requires you to be logged in to download it",
                },
            )
        if version.access == "disabled":
            return self._json(
                401,
                {
                    "error": "Unauthorized",
                    "message": "The creator of this asset has disabled downloads on this file",
                },
            )
        if version.access == "early_access":
            return self._json(
                403,
                {
                    "error": "Early Access",
                    "deadline": "2030-01-15T00:00:00.000Z",
                    "message": "This asset is in Early Access. You can use Buzz access it now!",
                },
            )
        if version.access == "no_access":
            return self._json(403, {"error": "You do not have access to download this file"})
        if version.access == "archived":
            return self._json(410, {"error": "Model archived, not available for download"})
        wanted = {k: v for k, v in params.items() if k in {"type", "format", "size", "fp"}}
        for stored, extra in version.files:
            query = extra.get("query", {})
            if wanted and any(query.get(k) != v for k, v in wanted.items()):
                continue
            if not wanted and not extra.get("primary"):
                continue
            fault = up.faults.get(stored.key)
            if fault is not None and fault.statuses and fault.statuses[0] == 429:
                fault.statuses.pop(0)
                return self._json(
                    429, {"error": "Too many requests"}, {"Retry-After": str(fault.retry_after)}
                )
            signed = urllib.parse.urlencode(
                {
                    "X-Amz-Expires": "86400",
                    "X-Amz-Signature": hashlib.sha256(f"{stored.key}{time.time_ns()}".encode()).hexdigest()[
                        :32
                    ],
                    "response-content-disposition": f'attachment; filename="{stored.name}"',
                }
            )
            location = f"{up.storage_url}/files/{stored.key}?{signed}"
            return self._send(307, b"", {"Location": location, "Cache-Control": "no-store, max-age=0"})
        self._json(404, {"error": "File not found"})

    def _hf_models(self, params: dict[str, str]) -> None:
        """The hub's list of models: a search of their ids, a task, a tag, in an order, with pages by a
        cursor in the `Link: rel="next"` header; a token the hub does not know is refused (401). With
        `expand` (repeated), each model has its id and only the fields named."""
        up = self.server.upstream
        if (token := self._bearer()) and token not in up.hf_tokens:
            return self._json(401, {"error": "Invalid credentials in Authorization header"})
        search = params.get("search", "").lower()
        repos = [
            r for r in up.repos.values()
            if search in r.repo.lower() and params.get("pipeline_tag", r.pipeline_tag) == r.pipeline_tag
            and params.get("filter", "") in ("", *r.tags)
        ]  # fmt: skip
        order = params.get("sort", "")
        if order in ("downloads", "likes"):
            repos.sort(key=lambda r: getattr(r, order), reverse=params.get("direction") == "-1")
        limit, start = int(params.get("limit", "1000")), int(params.get("cursor", "0"))
        asked = [(k, v) for k, v in urllib.parse.parse_qsl(self.path.partition("?")[2]) if k != "cursor"]
        headers = {}
        if start + limit < len(repos):
            query = urllib.parse.urlencode([*asked, ("cursor", str(start + limit))])
            headers["Link"] = f'<{up.hf_url}/api/models?{query}>; rel="next"'
        expand = [v for k, v in asked if k == "expand"]
        items = []
        for r in repos[start : start + limit]:
            item = {
                "_id": hashlib.sha1(r.repo.encode()).hexdigest()[:24], "id": r.repo, "modelId": r.repo,
                "likes": r.likes, "downloads": r.downloads, "private": r.private, "tags": list(r.tags),
                "pipeline_tag": r.pipeline_tag or None, "library_name": "diffusers" if "diffusers" in r.tags else None,
                "createdAt": "2024-08-01T12:00:00.000Z", "lastModified": r.last_modified,
                "gated": "manual" if r.gated else False,
            }  # fmt: skip
            items.append({k: v for k, v in item.items() if k in ("_id", "id", *expand)} if expand else item)
        self._json(200, items, headers)

    def _hf_error(self, status: int, code: str, message: str) -> None:
        self._json(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message})

    def _hf_repo(self, repo_id: str, revision: str) -> HfRepo | None:
        up = self.server.upstream
        repo = up.repos.get(repo_id)
        if repo is None:
            self._hf_error(401, "RepoNotFound", "Repository Not Found for url.")
            return None
        if revision not in repo.revisions and revision != repo.commit:
            self._hf_error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return None
        if repo.gated:
            token = self._bearer()
            if not token:
                self._hf_error(
                    401,
                    "GatedRepo",
                    f"Access to model {repo_id} is restricted. You must have access to it and be authenticated to access it. Please log in.",
                )
                return None
            if token not in up.hf_tokens:
                self._hf_error(
                    403,
                    "GatedRepo",
                    f"Access to model {repo_id} is restricted and you are not in the authorized list. "
                    f"Visit https://huggingface.co/{repo_id} to ask for access.",
                )
                return None
        return repo

    def _hf_tree(self, repo_id: str, revision: str, folder: str, params: dict[str, str]) -> None:
        repo = self._hf_repo(repo_id, revision)
        if repo is None:
            return
        up = self.server.upstream
        entries = []
        dirs = set()
        for path, stored in sorted(repo.files.items()):
            if folder and not path.startswith(folder.rstrip("/") + "/"):
                continue
            rest = path[len(folder.rstrip("/")) + 1 :] if folder else path
            if "/" in rest and params.get("recursive") != "true":
                dirs.add((folder.rstrip("/") + "/" if folder else "") + rest.split("/")[0])
                continue
            entry: dict[str, Any] = {
                "type": "file",
                "oid": stored.sha256[:40],
                "size": stored.size,
                "path": path,
            }
            if stored.size > 1024:
                entry["lfs"] = {"oid": stored.sha256, "size": stored.size, "pointerSize": 134}
            entries.append(entry)
        entries = [
            {"type": "directory", "oid": "0" * 40, "size": 0, "path": d} for d in sorted(dirs)
        ] + entries
        start = int(params.get("cursor", "0"))
        page = entries[start : start + up.tree_page_size]
        headers = {}
        if start + up.tree_page_size < len(entries):
            query = urllib.parse.urlencode({**params, "cursor": start + up.tree_page_size})
            headers["Link"] = (
                f'<{up.hf_url}/api/models/{repo_id}/tree/{revision}/{folder}?{query}>; rel="next"'
            )
        self._json(200, page, headers)

    def _hf_resolve(self, repo_id: str, revision: str, path: str) -> None:
        repo = self._hf_repo(repo_id, revision)
        if repo is None:
            return
        stored = repo.files.get(path)
        if stored is None:
            return self._hf_error(404, "EntryNotFound", f'{path} does not exist on "{revision}"')
        up = self.server.upstream
        headers = {
            "X-Repo-Commit": repo.commit,
            "X-Linked-Etag": f'"{stored.sha256}"',
            "X-Linked-Size": str(stored.size),
            "ETag": f'"{stored.sha256}"',
            "Location": f"{up.storage_url}/cdn/{stored.key}?Expires=9999999999&Signature=fake",
        }
        self._send(302, b"", headers)

    # -- the storage: signed URLs and the CDN, with Range and faults ------------------------------------
    def _storage(self, path: str) -> None:
        up = self.server.upstream
        if "Authorization" in self.headers:
            return self._send(
                400,
                b"<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed</Message></Error>",
            )
        key = path.rsplit("/", 1)[-1]
        stored = up.files.get(key)
        if stored is None:
            return self._send(404, b"NoSuchKey")
        fault = up.faults.get(key)
        if fault is not None and fault.statuses:
            status = fault.statuses.pop(0)
            headers = {"Retry-After": str(fault.retry_after)} if status == 429 else {}
            return self._send(status, f"fault {status}".encode(), headers)
        disposition = (
            f"inline; filename*=UTF-8''{urllib.parse.quote(stored.name)}; filename=\"{stored.name}\";"
            if path.startswith("/cdn/")
            else f'attachment; filename="{stored.name}"'
        )
        size = stored.size
        start, end, status = 0, size - 1, 200
        range_header = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if range_header and (if_range is None or if_range == stored.etag):
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header.strip())
            if m:
                start = int(m[1])
                end = int(m[2]) if m[2] else size - 1
                if start >= size:
                    return self._send(416, b"", {"Content-Range": f"bytes */{size}"})
                status = 206
        length = end - start + 1
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("ETag", stored.etag)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Disposition", disposition)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if self.command == "HEAD":
            return
        self._stream(stored, start, length, fault)

    def _stream(self, stored: StoredFile, start: int, length: int, fault: Fault | None) -> None:
        sent = 0
        with stored.path.open("rb") as f:
            if fault is None or not (fault.drop_after or fault.stall_after or fault.throttle):
                self.record.body_bytes = self.connection.sendfile(f, start, length)
                return
            f.seek(start)
            began = time.monotonic()
            while sent < length:
                piece = f.read(
                    min(CHUNK if not fault.throttle else max(1024, fault.throttle // 20), length - sent)
                )
                if fault.drop_after is not None and fault.drops > 0 and sent + len(piece) >= fault.drop_after:
                    self.wfile.write(piece[: max(0, fault.drop_after - sent)])
                    self.wfile.flush()
                    fault.drops -= 1
                    self.record.body_bytes = fault.drop_after
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if (
                    fault.stall_after is not None
                    and fault.stalls > 0
                    and sent + len(piece) >= fault.stall_after
                ):
                    self.wfile.write(piece[: max(0, fault.stall_after - sent)])
                    self.wfile.flush()
                    fault.stalls -= 1
                    time.sleep(fault.stall_seconds)
                    self.close_connection = True
                    return
                self.wfile.write(piece)
                sent += len(piece)
                self.record.body_bytes = sent
                if fault.throttle:
                    ahead = sent / fault.throttle - (time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)


def _preview_png(seed: str) -> bytes:
    import io

    from PIL import Image

    digest = hashlib.sha256(seed.encode()).digest()
    buffer = io.BytesIO()
    Image.new("RGB", (480, 600), (digest[0], digest[1], digest[2])).save(buffer, "PNG")
    return buffer.getvalue()
