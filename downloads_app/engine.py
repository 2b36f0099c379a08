"""Streams one file over HTTP into `<name>.part`, resumes it, checks it and renames it (DESIGN.md §9).

It knows nothing of Django: the worker gives it a DownloadJob and callbacks, and keeps the ResumeState
it updates. Memory stays constant whatever the size: the file is hashed while it is written, so a
finished download needs no second read.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import hashlib
import itertools
import json
import os
import queue
import re
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.structures import CaseInsensitiveDict

from mmsite.files import fsync_dir

READ_SIZE = 1 << 20
RING_SIZE = 8
DISK_RESERVE = 16 << 20
USER_AGENT = "ModelManager/0.1 (+https://github.com/; ComfyUI model manager)"
REDIRECTS = (301, 302, 303, 307, 308)
SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")


class DownloadError(Exception):
    """A download that cannot go on; `retryable` ones are tried again with backoff."""

    retryable = False


class TransientError(DownloadError):
    """A dropped connection, a stall, a 5xx: worth another try from where the part ends."""

    retryable = True


class HttpError(DownloadError):
    """An answer that will not change by asking again (401, 403, 404, 410…)."""

    def __init__(self, status: int, url: str, headers: Mapping[str, str], body: str) -> None:
        super().__init__(f"HTTP {status} from {urlsplit(url).netloc}")
        self.status = status
        self.url = url
        self.headers: Mapping[str, str] = CaseInsensitiveDict(headers)  # as HTTP names them: in any case
        self.body = body

    def json(self) -> dict[str, Any]:
        try:
            data = json.loads(self.body)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}


class RateLimited(DownloadError):
    retryable = True

    def __init__(self, retry_after: float, url: str) -> None:
        super().__init__(f"rate limited by {urlsplit(url).netloc}; retrying in {retry_after:.0f} s")
        self.retry_after = retry_after


class DiskFull(DownloadError):
    pass


class HashMismatch(DownloadError):
    pass


class FileClash(DownloadError):
    pass


class Stopped(Exception):
    """Pause, cancel or shutdown was asked for; the part file is left as it is."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class ResumeState:
    """What must survive between runs to resume safely: the validator of the bytes already in the part
    (ETag or Last-Modified, sent back as If-Range) and the file's total size."""

    validator: str = ""
    total: int | None = None


@dataclass
class DownloadJob:
    url: str
    dest_dir: Path
    filename: str
    expected_sha256: str = ""
    expected_size: int | None = None
    # Origin ("https://civitai.com") → Authorization value. A key goes only to its own origin, never
    # to the storage host a redirect points at.
    auth: dict[str, str] = field(default_factory=dict)
    state: ResumeState = field(default_factory=ResumeState)
    # Given when the download replaces the file that has its name now (a newer file of the same path):
    # moves that file away, just before the finished download takes the name. Without it, an existing
    # file is never touched.
    make_room: Callable[[], None] | None = None

    @property
    def part_path(self) -> Path:
        return self.dest_dir / (self.filename + ".part")

    @property
    def final_path(self) -> Path:
        return self.dest_dir / self.filename


@dataclass
class DownloadResult:
    path: Path
    sha256: str
    size: int


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def parse_retry_after(value: str | None, default: float = 30.0) -> float:
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return default


def filename_from_disposition(value: str | None) -> str:
    """The file name of a Content-Disposition header (RFC 6266 `filename*` first), without any folder."""
    if not value:
        return ""
    from urllib.parse import unquote

    if m := re.search(r"filename\*\s*=\s*([\w-]+)''([^;]+)", value, re.IGNORECASE):
        name = unquote(m[2].strip().strip('"'), encoding=m[1] or "utf-8", errors="replace")
    elif m := re.search(r'filename\s*=\s*"((?:[^"\\]|\\.)*)"', value, re.IGNORECASE):
        name = m[1].replace('\\"', '"')
    elif m := re.search(r"filename\s*=\s*([^;]+)", value, re.IGNORECASE):
        name = m[1].strip()
    else:
        return ""
    return name.replace("\\", "/").rsplit("/", 1)[-1].strip()


class SpeedLimit:
    """Keeps every download that shares it under `rate()` bytes a second together (0: no limit).

    Each chunk books its time on one timeline shared by all of them, so two downloads split the rate
    instead of each taking it whole. `rate` is asked at every chunk: a limit changed in the settings holds
    the downloads already running. Limited, the chunks are small (a quarter second's worth), so that
    the connection is read steadily rather than in bursts with long silences the server might time out.
    """

    MIN_CHUNK = 16 << 10

    def __init__(self, rate: Callable[[], int] = lambda: 0) -> None:
        self._rate = rate
        self._lock = threading.Lock()
        self._free_at = 0.0

    def chunk_size(self) -> int:
        rate = self._rate()
        return READ_SIZE if rate <= 0 else max(self.MIN_CHUNK, min(READ_SIZE, rate // 4))

    def wait_for(self, size: int, should_stop: Callable[[], str]) -> None:
        """Returns once `size` more bytes keep within the rate; raises Stopped when asked to stop."""
        rate = self._rate()
        if rate <= 0:
            return
        with self._lock:
            now = time.monotonic()
            self._free_at = max(self._free_at, now) + size / rate
            until = self._free_at
        while (left := until - time.monotonic()) > 0:
            if reason := should_stop():
                raise Stopped(reason)
            if self._rate() <= 0:  # lifted meanwhile: what was booked at the old rate is let go
                with self._lock:
                    self._free_at = 0.0
                return
            time.sleep(min(0.25, left))


class Engine:
    def __init__(
        self,
        *,
        session: requests.Session | None = None,
        stall_timeout: float = 60.0,
        connect_timeout: float = 20.0,
        max_attempts: int = 8,
        backoff_start: float = 2.0,
        backoff_cap: float = 60.0,
        disk_free: Callable[[Path], int] = lambda path: shutil.disk_usage(path).free,
        speed_limit: SpeedLimit | None = None,
    ) -> None:
        self.session = session or requests.Session()
        self.speed_limit = speed_limit or SpeedLimit()
        self.session.headers["User-Agent"] = USER_AGENT
        # Model files are sent as they are; a compressed answer would not match its Content-Length.
        self.session.headers["Accept-Encoding"] = "identity"
        self.stall_timeout = stall_timeout
        self.connect_timeout = connect_timeout
        self.max_attempts = max_attempts
        self.backoff_start = backoff_start
        self.backoff_cap = backoff_cap
        self.disk_free = disk_free

    # -- the public call -------------------------------------------------------------------------------
    def download(
        self,
        job: DownloadJob,
        *,
        on_progress: Callable[[int, int | None], None] = lambda done, total: None,
        should_stop: Callable[[], str] = lambda: "",
        on_retry: Callable[[DownloadError, float], None] = lambda error, delay: None,
    ) -> DownloadResult:
        """Downloads until the file is complete and checked under its final name.

        Raises Stopped when asked to stop, and DownloadError subclasses when it cannot finish;
        retryable errors are retried here first, with backoff (Retry-After for 429).
        """
        job.dest_dir.mkdir(parents=True, exist_ok=True)
        failures = 0
        error: DownloadError
        while True:
            if reason := should_stop():
                raise Stopped(reason)
            try:
                return self._attempt(job, on_progress, should_stop)
            except RateLimited as exc:
                delay, error = exc.retry_after, exc
            except TransientError as exc:
                failures += 1
                if failures >= self.max_attempts:
                    raise
                delay, error = min(self.backoff_cap, self.backoff_start * 2 ** (failures - 1)), exc
            on_retry(error, delay)
            self._wait(delay, should_stop)

    # -- one attempt -----------------------------------------------------------------------------------
    def _attempt(
        self,
        job: DownloadJob,
        on_progress: Callable[[int, int | None], None],
        should_stop: Callable[[], str],
    ) -> DownloadResult:
        part = job.part_path
        if job.final_path.exists():
            if (finished := self._finished_before(job)) is not None:
                return finished
            if job.make_room is None:
                raise FileClash(
                    f"{job.final_path.name} already exists in that folder; nothing was overwritten."
                )
        offset = part.stat().st_size if part.exists() else 0
        if offset and not job.state.validator:
            offset = self._restart(part, job)  # unknown bytes: never splice them with others
        self._check_space(job, offset)
        headers = {}
        if offset:
            headers = {"Range": f"bytes={offset}-", "If-Range": job.state.validator}
        response = self._open(job, headers)
        with response:
            if response.status_code == 416 and offset:
                total = _content_range_total(response.headers.get("Content-Range", ""))
                if total == offset:
                    return self._finish(job, _hash_file(part, offset), offset)
                offset = self._restart(part, job)
                raise TransientError("the server refused the resume range; starting over")
            if response.status_code == 206:
                start = _content_range_start(response.headers.get("Content-Range", ""))
                if start != offset:
                    self._restart(part, job)
                    raise TransientError(f"the server resumed at byte {start}, not {offset}; starting over")
                total = _content_range_total(response.headers.get("Content-Range", ""))
            elif response.status_code == 200:
                if offset:  # the file changed upstream (If-Range failed) or Range was ignored
                    offset = self._restart(part, job)
                total = _int_or_none(response.headers.get("Content-Length"))
            else:
                raise TransientError(
                    f"unexpected HTTP {response.status_code} from {urlsplit(response.url).netloc}"
                )
            job.state.validator = _validator(response.headers)
            job.state.total = total
            self._check_space(job, offset)
            # Reported before the first byte lands: a part that grows while its validator is still unsaved
            # cannot be trusted after a crash, and would be fetched again from byte 0.
            on_progress(offset, total)
            with _open_part(part, offset) as out:
                # Hashed only now that the part is ours alone, and exactly as far as it is resumed.
                hasher = _Hasher(
                    _hash_file(part, offset) if offset else hashlib.sha256(), out.fileno(), offset
                )
                try:
                    done = self._stream(response, out, offset, hasher, total, on_progress, should_stop)
                finally:
                    digest = hasher.close()
        if total is not None and done != total:
            raise TransientError(f"the connection closed at {done:,} of {total:,} bytes")
        return self._finish(job, digest, done)

    def _open(self, job: DownloadJob, extra_headers: dict[str, str]) -> requests.Response:
        url = job.url
        for _ in range(10):
            headers = dict(extra_headers)
            if key := job.auth.get(origin(url)):
                headers["Authorization"] = key
            try:
                response = self.session.get(
                    url,
                    headers=headers,
                    stream=True,
                    allow_redirects=False,
                    timeout=(self.connect_timeout, self.stall_timeout),
                )
            except requests.RequestException as exc:
                raise TransientError(
                    f"cannot reach {urlsplit(url).netloc}: {describe_request_error(exc)}"
                ) from None
            if response.status_code in REDIRECTS and "Location" in response.headers:
                linked = response.headers.get("X-Linked-Etag", "").strip('"')
                if not job.expected_sha256 and SHA256_RE.match(linked):
                    job.expected_sha256 = linked.lower()  # Hugging Face names the LFS content's sha256
                response.close()
                url = urljoin(url, response.headers["Location"])
                continue
            if response.status_code in (200, 206, 416):
                return response
            body = response.text[:4000]
            response.close()
            if response.status_code == 429:
                raise RateLimited(parse_retry_after(response.headers.get("Retry-After")), url)
            if response.status_code >= 500 or response.status_code == 408:
                raise TransientError(f"HTTP {response.status_code} from {urlsplit(url).netloc}")
            raise HttpError(response.status_code, url, dict(response.headers), body)
        raise HttpError(310, url, {}, "too many redirects")

    def _stream(
        self,
        response: requests.Response,
        out: Any,
        offset: int,
        hasher: _Hasher,
        total: int | None,
        on_progress: Callable[[int, int | None], None],
        should_stop: Callable[[], str],
    ) -> int:
        done = offset
        reader = _BodyReader(response)
        ring = [bytearray(READ_SIZE) for _ in range(RING_SIZE)]
        for turn in itertools.count():
            buffer = memoryview(ring[turn % RING_SIZE])[: self.speed_limit.chunk_size()]
            try:
                size = reader.readinto(buffer)
            except Exception as exc:  # socket timeouts, urllib3's protocol errors, resets
                raise TransientError(f"the connection failed at {done:,} bytes: {_reason(exc)}") from None
            if not size:
                break
            chunk = buffer[:size]
            try:
                out.write(chunk)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise DiskFull("The disk is full: free some space, then resume.") from None
                raise
            hasher.update(chunk)
            done += size
            on_progress(done, total)
            if reason := should_stop():
                raise Stopped(reason)
            self.speed_limit.wait_for(size, should_stop)
        return done

    def _finish(self, job: DownloadJob, digest: Any, size: int) -> DownloadResult:
        part, final = job.part_path, job.final_path
        sha256 = digest.hexdigest()
        if job.expected_sha256 and sha256 != job.expected_sha256.lower():
            part.unlink(missing_ok=True)
            job.state.validator = ""
            raise HashMismatch(
                f"The file's SHA256 is {sha256[:12]}…, the source announced {job.expected_sha256[:12].lower()}…: "
                "the download was corrupted or the file changed. Nothing was kept."
            )
        with part.open("rb+") as f:
            os.fsync(f.fileno())
        if final.exists() and job.make_room is not None:
            job.make_room()
        try:
            os.link(part, final)  # fails if the name exists: an existing file is never overwritten
        except FileExistsError:
            raise FileClash(f"{final.name} already exists in that folder; nothing was overwritten.") from None
        except OSError:  # a filesystem without hard links
            if final.exists():
                raise FileClash(
                    f"{final.name} already exists in that folder; nothing was overwritten."
                ) from None
            os.replace(part, final)
        else:
            part.unlink()
        fsync_dir(final.parent)
        return DownloadResult(final, sha256, size)

    # -- helpers -----------------------------------------------------------------------------------------
    def _finished_before(self, job: DownloadJob) -> DownloadResult | None:
        """A previous run that died between the rename and its bookkeeping left the file complete: the
        part is a hard link of it, or it has exactly the announced SHA256. Anything else is someone's."""
        part, final = job.part_path, job.final_path
        linked = part.exists() and os.path.samefile(part, final)
        if not linked and not job.expected_sha256:
            return None
        if not linked and job.make_room is not None and final.stat().st_size != job.expected_size:
            # The file this download replaces, gigabytes not worth reading (the hub's size is exact;
            # Civitai's, in KB, is not, so it is not trusted elsewhere).
            return None
        size = final.stat().st_size
        sha256 = _hash_file(final, size).hexdigest()
        if linked or sha256 == job.expected_sha256.lower():
            part.unlink(missing_ok=True)
            return DownloadResult(final, sha256, size)
        return None

    def _restart(self, part: Path, job: DownloadJob) -> int:
        part.unlink(missing_ok=True)
        job.state.validator = ""
        return 0

    def _check_space(self, job: DownloadJob, offset: int) -> None:
        total = job.state.total or job.expected_size
        if not total:
            return
        needed = total - offset + DISK_RESERVE
        free = self.disk_free(job.dest_dir)
        if free < needed:
            raise DiskFull(
                f"The disk is full: {_size(total - offset)} more are needed and {_size(free)} are free. "
                "Free some space, then resume."
            )

    def _wait(self, seconds: float, should_stop: Callable[[], str]) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if reason := should_stop():
                raise Stopped(reason)
            time.sleep(min(0.25, left))


def _open_part(part: Path, offset: int) -> Any:
    """Opens the part for writing at `offset`, locked: a worker that lost its row to another (it looked
    dead) may still be writing for half a second; the new owner waits rather than interleave bytes."""
    fd = os.open(part, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise TransientError("another worker is still writing this file") from None
    os.ftruncate(fd, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return os.fdopen(fd, "wb", buffering=0)


class _BodyReader:
    """Reads the body straight into the engine's buffers when its length is known, one receive at a
    time (so progress and stop requests stay responsive on slow links); through urllib3 otherwise.
    urllib3's read1 copies every chunk once more and cost a third of the engine's speed."""

    def __init__(self, response: requests.Response) -> None:
        self.raw = response.raw
        length = response.headers.get("Content-Length", "")
        chunked = "chunked" in response.headers.get("Transfer-Encoding", "").lower()
        self.fp = getattr(getattr(self.raw, "_fp", None), "fp", None)  # http.client's buffered socket
        self.direct = (
            self.fp is not None and hasattr(self.fp, "readinto1") and length.isdigit() and not chunked
        )
        self.remaining = int(length) if self.direct else 0

    def readinto(self, buffer: memoryview) -> int:
        if self.direct:
            if not self.remaining:
                return 0
            size = self.fp.readinto1(buffer[: self.remaining])  # type: ignore[union-attr]
            self.remaining -= size
            return size
        data = self.raw.read1(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _Hasher:
    """SHA256 in a thread of its own: hashlib releases the GIL, so one chunk is hashed while the next
    is received and written. Chunks are views of the engine's ring of buffers; the queue is kept two
    shorter than the ring, so a buffer is never refilled before it is hashed.

    The same thread starts the disk writeback of what is hashed (the chunk was written before it was
    queued): the fsync before the rename then finds little left to write, instead of a whole file's
    worth of dirty pages."""

    def __init__(self, digest: Any, fd: int, offset: int) -> None:
        self.digest = digest
        self.writeback = _Writeback(fd, offset)
        self.chunks: queue.Queue[memoryview | None] = queue.Queue(maxsize=RING_SIZE - 2)
        self.thread = threading.Thread(target=self._run, name="mm-sha256", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (chunk := self.chunks.get()) is not None:
            self.digest.update(chunk)
            self.writeback.advance(len(chunk))

    def update(self, chunk: memoryview) -> None:
        self.chunks.put(chunk)

    def close(self) -> Any:
        self.chunks.put(None)
        self.thread.join()
        return self.digest


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """Linux's sync_file_range(2), which Python does not wrap; None elsewhere."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        func = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    func.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    func.restype = ctypes.c_int
    return func  # type: ignore[no-any-return]


_sync_file_range = _load_sync_file_range()
SYNC_FILE_RANGE_WRITE = 2
WRITEBACK_STEP = 16 << 20


class _Writeback:
    """Asks the kernel to start writing each finished 16 MiB of the part to disk, without waiting."""

    def __init__(self, fd: int, offset: int) -> None:
        self.fd = fd
        self.start = self.end = offset

    def advance(self, size: int) -> None:
        self.end += size
        if _sync_file_range is None or self.end - self.start < WRITEBACK_STEP:
            return
        _sync_file_range(self.fd, self.start, self.end - self.start, SYNC_FILE_RANGE_WRITE)
        self.start = self.end


def _hash_file(path: Path, length: int) -> Any:
    """The running SHA256 of the first `length` bytes of a part (read once when a download resumes)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while length > 0 and (chunk := f.read(min(READ_SIZE * 4, length))):
            digest.update(chunk)
            length -= len(chunk)
    return digest


def _validator(headers: Any) -> str:
    etag = headers.get("ETag", "")
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("Last-Modified", "")


def _content_range_start(value: str) -> int | None:
    m = re.match(r"bytes (\d+)-\d+/", value)
    return int(m[1]) if m else None


def _content_range_total(value: str) -> int | None:
    m = re.search(r"/(\d+)\s*$", value)
    return int(m[1]) if m else None


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def describe_request_error(exc: requests.RequestException) -> str:
    """Why a request got no answer, in words a user can act on rather than urllib3's chain of errors."""
    if isinstance(exc, requests.Timeout):
        return "it did not answer in time"
    if isinstance(exc, requests.exceptions.SSLError):
        return "its certificate could not be verified"
    if isinstance(exc, requests.exceptions.ProxyError):
        return "the proxy refused the connection"
    if isinstance(exc, requests.ConnectionError):
        return "no connection (check the address and this machine's network)"
    if isinstance(exc, requests.TooManyRedirects):
        return "it redirects in a loop"
    return str(exc)[:200] or type(exc).__name__


def _reason(exc: BaseException) -> str:
    text = str(exc)
    if "timed out" in text.lower() or "timeout" in type(exc).__name__.lower():
        return "no data arrived in time (stalled)"
    return text[:200] or type(exc).__name__


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
