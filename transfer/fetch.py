"""Download one file over http(s) with retries, resume and checksum verification."""

import http.client
import os
import re
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from transfer.digest import Checksum, file_digest
from transfer.errors import UserError

CHUNK_BYTES = 1 << 20  # 1 MiB: bounded memory, few syscalls
RETRY_STATUSES = frozenset({429})  # plus every 5xx: the server may answer on a later try
CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class _RetryableError(Exception):
    """A failure worth another attempt; reached_server says whether the host answered at all."""

    def __init__(self, reason: str, *, reached_server: bool) -> None:
        super().__init__(reason)
        self.reached_server = reached_server


class _RangeRejected(Exception):
    """The server answered 416 to a resume request, so the partial file is useless."""


def fetch(
    url: str,
    destination: Path,
    *,
    checksum: Checksum | None,
    offline_hint: str,
    attempts: int = 5,
    backoff_seconds: float = 1.0,
    timeout_seconds: float = 60.0,
) -> None:
    """Download url to destination, resuming and retrying transient failures, then verify it."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"fetch only handles http(s) URLs, got {url!r}")
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    part_path = destination.with_name(destination.name + ".part")
    reached_server = False
    for attempt_index in range(attempts):
        try:
            _download_once(url, part_path, destination.name, timeout_seconds)
            break
        except _RetryableError as error:
            reached_server = reached_server or error.reached_server
            reason = str(error)
        except OSError as error:  # network errors are already converted, so this is the local disk
            raise UserError(f"cannot write {part_path}: {error.strerror or error}") from None
        if attempt_index + 1 < attempts:
            delay = backoff_seconds * 2**attempt_index
            print(
                f"retrying {url} in {delay:.1f} s (attempt {attempt_index + 2}/{attempts}): {reason}", file=sys.stderr
            )
            time.sleep(delay)
    else:
        if not reached_server:
            host = urllib.parse.urlsplit(url).hostname
            raise UserError(f"cannot reach {host} to download {url} ({reason}); {offline_hint}")
        # The partial file stays so a rerun resumes instead of starting over.
        raise UserError(f"download of {url} failed after {attempts} attempts: {reason}")
    _verify_download(url, part_path, checksum)
    os.replace(part_path, destination)


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


def _download_once(url: str, part_path: Path, label: str, timeout_seconds: float) -> None:
    """One request: resume or restart the partial file and stream the body into it."""
    offset = part_path.stat().st_size if part_path.exists() else 0
    try:
        response = _open(url, offset, timeout_seconds)
    except _RangeRejected:
        part_path.unlink()
        offset = 0
        response = _open(url, offset, timeout_seconds)
    with response:
        offset, total = _resume_point(response, offset, part_path)
        with (
            open(part_path, "ab" if offset else "wb") as part_file,
            tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=label, disable=None) as progress,
        ):
            _copy_body(response, part_file, progress)
    received = part_path.stat().st_size
    if total is not None and received < total:
        # http.client reports a short body as a quiet end of stream, not as an error.
        raise _RetryableError(f"connection dropped after {received} of {total} bytes", reached_server=True)


def _open(url: str, offset: int, timeout_seconds: float) -> http.client.HTTPResponse:
    """Send the GET (ranged when resuming) and sort failures into retryable or fatal."""
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout_seconds)
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


def _copy_body(response: http.client.HTTPResponse, part_file: BinaryIO, progress: tqdm) -> None:
    """Append the response body to part_file; network errors become retryable."""
    while True:
        try:
            # read1 returns what has arrived, so bytes received before a drop are kept for resume.
            chunk = response.read1(CHUNK_BYTES)
        except (OSError, http.client.HTTPException) as error:
            raise _RetryableError(f"connection dropped mid-download: {_describe(error)}", reached_server=True) from None
        if not chunk:
            return
        part_file.write(chunk)
        progress.update(len(chunk))


def _describe(error: BaseException | str) -> str:
    """A short, non-empty reason for a retry message."""
    return str(error) or type(error).__name__
