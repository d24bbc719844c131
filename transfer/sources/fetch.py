"""Download one file over http(s) with retries, resume and checksum verification.

What a server or a planted file could otherwise make of a download is bounded: at most max_bytes
are written (refused from Content-Length before the body when it says more), the whole download,
retries included, ends at a deadline however slowly bytes arrive, a redirect is followed only to
https, and the `.part` file is opened without following a symlink and must be a regular file.
"""

import http.client
import os
import re
import socket
import ssl
import stat
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from transfer.digest import Checksum, file_digest
from transfer.errors import UserError

CHUNK_BYTES = 1 << 20  # 1 MiB: bounded memory, few syscalls
RETRY_STATUSES = frozenset({429})  # plus every 5xx: the server may answer on a later try
CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True)
class RetryPolicy:
    """How long a download may take: attempts with exponential backoff, a per-read timeout, an overall deadline."""

    attempts: int = 5
    backoff_seconds: float = 1.0  # before attempt 2; doubled before each later one
    timeout_seconds: float = 60.0  # per connect or read: a silent server counts as a failed attempt
    # Retries and resumes included: the 161 MiB CIFAR archive at 100 KB/s takes 28 minutes.
    deadline_seconds: float = 3600.0


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to https: an https URL must not be downgraded, an http one may only be upgraded."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # urllib's signature
        """urllib's redirect, refused with one line unless the new URL is https."""
        if urllib.parse.urlsplit(newurl).scheme != "https":
            fp.close()
            raise UserError(f"{req.full_url} redirects to {newurl}: only redirects to https are followed")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_HttpsOnlyRedirects)


class _RetryableError(Exception):
    """A failure worth another attempt; reached_server says whether the host answered at all."""

    def __init__(self, reason: str, *, reached_server: bool) -> None:
        super().__init__(reason)
        self.reached_server = reached_server


class _TooLarge(UserError):
    """The download is bigger than the file it should be; fetch() deletes it."""


class _RangeRejected(Exception):
    """The server answered 416 to a resume request, so the partial file is useless."""


def fetch(
    url: str,
    destination: Path,
    *,
    checksum: Checksum | None,
    max_bytes: int,
    offline_hint: str,
    retry: RetryPolicy = RetryPolicy(),
) -> None:
    """Download url to destination (at most max_bytes), resuming and retrying transient failures, then verify it."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"fetch only handles http(s) URLs, got {url!r}")
    if retry.attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {retry.attempts}")
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    part_path = destination.with_name(destination.name + ".part")
    limits = _Limits(max_bytes, time.monotonic() + retry.deadline_seconds, retry)
    reached_server = False
    for attempt_index in range(retry.attempts):
        try:
            _download_once(url, part_path, destination.name, limits)
            break
        except _RetryableError as error:
            reached_server = reached_server or error.reached_server
            reason = str(error)
        except _TooLarge:
            part_path.unlink(missing_ok=True)  # not the file asked for: nothing to resume
            raise
        except OSError as error:  # network errors are already converted, so this is the local disk
            raise UserError(f"cannot write {part_path}: {error.strerror or error}") from None
        if attempt_index + 1 < retry.attempts:
            delay = retry.backoff_seconds * 2**attempt_index
            limits.require_time_left(url, delay)
            print(
                f"retrying {url} in {delay:.1f} s (attempt {attempt_index + 2}/{retry.attempts}): {reason}",
                file=sys.stderr,
            )
            time.sleep(delay)
    else:
        if not reached_server:
            host = urllib.parse.urlsplit(url).hostname
            raise UserError(f"cannot reach {host} to download {url} ({reason}); {offline_hint}")
        # The partial file stays so a rerun resumes instead of starting over.
        raise UserError(f"download of {url} failed after {retry.attempts} attempts: {reason}")
    _verify_download(url, part_path, checksum)
    os.replace(part_path, destination)


@dataclass(frozen=True)
class _Limits:
    """The byte and time bounds of one fetch()."""

    max_bytes: int
    deadline: float  # time.monotonic() value
    retry: RetryPolicy

    def read_timeout(self, url: str) -> float:
        """The per-read timeout, shortened so that no read outlives the deadline."""
        self.require_time_left(url, 0.0)
        return min(self.retry.timeout_seconds, self.deadline - time.monotonic())

    def require_time_left(self, url: str, seconds: float) -> None:
        """Raise UserError if the deadline comes before `seconds` from now; the partial file stays for a rerun."""
        if time.monotonic() + seconds >= self.deadline:
            raise UserError(
                f"download of {url} did not finish within its {self.retry.deadline_seconds:g} s deadline "
                "(partial file kept: a rerun resumes)"
            )

    def require_within_size(self, url: str, size: int) -> None:
        """Raise _TooLarge if size exceeds max_bytes."""
        if size > self.max_bytes:
            raise _TooLarge(
                f"download of {url} is {size} bytes or more, over the {self.max_bytes} expected at most "
                "(download deleted)"
            )


def _verify_download(url: str, part_path: Path, checksum: Checksum | None) -> None:
    """Delete the download and raise UserError if its digest is not the expected one."""
    if checksum is None:
        return
    actual = file_digest(part_path, checksum.algorithm)
    if not checksum.matches(actual):
        # A resumed file may mix two server versions; deleting it makes a rerun start clean.
        part_path.unlink()
        raise UserError(
            f"checksum mismatch for {url}: expected {checksum.algorithm} {checksum.expected}, "
            f"got {actual} (download deleted)"
        )


def _download_once(url: str, part_path: Path, label: str, limits: _Limits) -> None:
    """One request: resume or restart the partial file and stream the body into it."""
    offset = _partial_size(part_path)
    try:
        response = _open(url, offset, limits.read_timeout(url))
    except _RangeRejected:
        part_path.unlink()
        offset = 0
        response = _open(url, offset, limits.read_timeout(url))
    with response:
        offset, total = _resume_point(response, offset, part_path)
        limits.require_within_size(url, total or 0)
        with (
            _open_partial(part_path, append=offset > 0) as part_file,
            tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=label, disable=None) as progress,
        ):
            _copy_body(url, response, part_file, progress, limits)
    received = part_path.stat().st_size
    if total is not None and received < total:
        # http.client reports a short body as a quiet end of stream, not as an error.
        raise _RetryableError(f"connection dropped after {received} of {total} bytes", reached_server=True)


def _partial_size(part_path: Path) -> int:
    """Bytes already downloaded; UserError if the .part path is not a regular file (never follows a symlink)."""
    try:
        status = os.lstat(part_path)
    except FileNotFoundError:
        return 0
    if not stat.S_ISREG(status.st_mode):
        raise UserError(f"{part_path} is not a regular file (a symlink or special file?); remove it and rerun")
    return status.st_size


def _open_partial(part_path: Path, *, append: bool) -> BinaryIO:
    """The .part file for writing, opened without following a symlink planted since _partial_size looked."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | (os.O_APPEND if append else os.O_TRUNC)
    descriptor = os.open(part_path, flags, 0o666)
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise UserError(f"{part_path} is not a regular file; remove it and rerun")
    return open(descriptor, "ab" if append else "wb")


def _open(url: str, offset: int, timeout_seconds: float) -> http.client.HTTPResponse:
    """Send the GET (ranged when resuming) and sort failures into retryable or fatal."""
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        return _OPENER.open(request, timeout=timeout_seconds)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and offset:
            raise _RangeRejected from None
        if error.code >= 500 or error.code in RETRY_STATUSES:
            raise _RetryableError(f"HTTP {error.code} {error.reason}", reached_server=True) from None
        raise UserError(f"download of {url} failed: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        host = urllib.parse.urlsplit(url).hostname
        if isinstance(error.reason, ssl.SSLError):  # a bad certificate does not heal by retrying
            raise UserError(f"TLS error talking to {host} for {url}: {error.reason}") from None
        if isinstance(error.reason, socket.gaierror):
            raise _RetryableError(f"cannot resolve {host}: {error.reason}", reached_server=False) from None
        raise _RetryableError(_describe(error.reason), reached_server=False) from None
    except (OSError, http.client.HTTPException) as error:  # connected, then dropped before the status line
        raise _RetryableError(_describe(error), reached_server=True) from None


def _resume_point(response: http.client.HTTPResponse, offset: int, part_path: Path) -> tuple[int, int | None]:
    """Byte offset the body starts at and the full file size if known; restart when unusable."""
    length = response.headers.get("Content-Length")
    body_bytes = int(length) if length is not None and length.isdigit() else None
    if response.status != 206:
        return 0, body_bytes  # the server ignored Range: the body is the whole file
    content_range = response.headers.get("Content-Range")
    if content_range is None:
        return offset, None if body_bytes is None else offset + body_bytes
    match = CONTENT_RANGE.fullmatch(content_range.strip())
    if match is None or int(match[1]) != offset:
        part_path.unlink(missing_ok=True)
        raise _RetryableError(f"server resumed with {content_range!r} instead of byte {offset}", reached_server=True)
    return offset, None if match[3] == "*" else int(match[3])


def _copy_body(
    url: str, response: http.client.HTTPResponse, part_file: BinaryIO, progress: tqdm, limits: _Limits
) -> None:
    """Append the response body to part_file, within the byte and time limits; network errors become retryable."""
    written = part_file.tell()
    while True:
        try:
            # read1 returns what has arrived, so bytes received before a drop are kept for resume.
            chunk = response.read1(CHUNK_BYTES)
        except (OSError, http.client.HTTPException) as error:
            raise _RetryableError(f"connection dropped mid-download: {_describe(error)}", reached_server=True) from None
        if not chunk:
            return
        limits.require_within_size(url, written + len(chunk))
        part_file.write(chunk)
        written += len(chunk)
        progress.update(len(chunk))
        limits.require_time_left(url, 0.0)  # a trickle of bytes never times a read out, so the deadline is checked here


def _describe(error: BaseException | str) -> str:
    """A short, non-empty reason for a retry message."""
    return str(error) or type(error).__name__
