"""fetch() against a local HTTP server that drops, fails, corrupts, trickles and ignores Range on request."""

import dataclasses
import hashlib
import http.server
import random
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from transfer.digest import Checksum, file_digest, verify_checksum
from transfer.errors import UserError
from transfer.sources.fetch import RetryPolicy, _open_partial, fetch
from transfer.sources.weights import IMAGENET_BYTES, IMAGENET_SHA256, IMAGENET_URL

PAYLOAD = random.Random(0).randbytes(300_000)  # 300 KB: several socket reads, still instant
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()
OFFLINE_HINT = "set data.source to a local copy of cifar-100-python.tar.gz or to 'synthetic'"
FAST_RETRIES = RetryPolicy(backoff_seconds=0.01, timeout_seconds=5.0)  # tests never sleep long
FAST = dict(offline_hint=OFFLINE_HINT, max_bytes=len(PAYLOAD), retry=FAST_RETRIES)
THREE_ATTEMPTS = dict(FAST, retry=dataclasses.replace(FAST_RETRIES, attempts=3))


@dataclass
class FaultPlan:
    """What the server does wrong, and for how many of the first requests."""

    drop_first: int = 0  # requests whose connection closes halfway through the body
    fail_first: int = 0  # requests answered with fail_status
    fail_status: int = 503
    corrupt: bool = False  # serve different bytes than PAYLOAD
    trickle: bool = False  # send the body in small chunks with tiny sleeps
    not_found: bool = False  # answer every request with 404
    ignore_range: bool = False  # answer ranged requests with 200 and the whole body
    no_length: bool = False  # send no Content-Length: the body ends when the connection closes
    drip_seconds: float = 0.0  # above 0: send the body one byte at a time, this long apart
    redirect_to: str | None = None  # answer every request with a 302 to this URL
    range_headers: list[str | None] = field(default_factory=list)  # Range header of each request seen


class FaultyHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at any path, misbehaving as server.plan says."""

    timeout = 5  # seconds: a stuck client cannot hang a server thread

    def do_GET(self) -> None:
        """Answer one GET according to the plan."""
        plan: FaultPlan = self.server.plan
        with self.server.lock:
            plan.range_headers.append(self.headers.get("Range"))
            request_index = len(plan.range_headers) - 1
        if plan.not_found:
            self.send_error(404)
        elif plan.redirect_to is not None:
            self.send_response(302)
            self.send_header("Location", plan.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif request_index < plan.fail_first:
            self.send_error(plan.fail_status)
        else:
            self._send_body(plan, request_index)

    def _send_body(self, plan: FaultPlan, request_index: int) -> None:
        """Send the payload (or the requested tail of it), possibly cut short."""
        payload = bytes(b ^ 0xFF for b in PAYLOAD[:16]) + PAYLOAD[16:] if plan.corrupt else PAYLOAD
        start = self._range_start() if not plan.ignore_range else None
        if start is not None and start >= len(payload):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(payload)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = payload[start or 0 :]
        self.send_response(200 if start is None else 206)
        if start is not None:
            self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
        if plan.no_length:
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if request_index < plan.drop_first:
            body = body[: len(body) // 2]  # the client was promised more; closing now is a dropped connection
            self.close_connection = True
        if plan.drip_seconds:
            self._write(body, chunk_bytes=1, pause_seconds=plan.drip_seconds)
        else:
            self._write(
                body, chunk_bytes=4096 if plan.trickle else len(body) or 1, pause_seconds=0.0005 if plan.trickle else 0
            )

    def _range_start(self) -> int | None:
        """Start byte of a `Range: bytes=N-` header, or None when absent."""
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        return int(match[1]) if match else None

    def _write(self, body: bytes, chunk_bytes: int, pause_seconds: float) -> None:
        """Write body in chunks; a client that hung up is not the server's problem."""
        try:
            for start in range(0, len(body), chunk_bytes):
                self.wfile.write(body[start : start + chunk_bytes])
                self.wfile.flush()
                time.sleep(pause_seconds)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


@pytest.fixture
def server(start_http_server):
    """A local server of the payload; set server.plan to inject faults."""
    return start_http_server(FaultyHandler, plan=FaultPlan())


def part_of(destination: Path) -> Path:
    """The partial-download path fetch() uses for destination."""
    return destination.with_name(destination.name + ".part")


def test_clean_download_is_verified_and_leaves_no_partial(server, tmp_path):
    destination = tmp_path / "raw" / "data.tar.gz"
    fetch(server.url, destination, checksum=Checksum("md5", PAYLOAD_MD5), **FAST)
    assert destination.read_bytes() == PAYLOAD
    assert not part_of(destination).exists()
    assert server.plan.range_headers == [None]


def test_dropped_connection_resumes_with_range(server, tmp_path, capsys):
    server.plan = FaultPlan(drop_first=1)
    destination = tmp_path / "data.tar.gz"
    fetch(server.url, destination, checksum=Checksum("md5", PAYLOAD_MD5), **FAST)
    assert destination.read_bytes() == PAYLOAD
    first, resumed = server.plan.range_headers
    assert first is None
    assert resumed == f"bytes={len(PAYLOAD) // 2}-"  # exactly the bytes already received
    assert "retrying" in capsys.readouterr().err


def test_503_twice_then_success(server, tmp_path, capsys):
    server.plan = FaultPlan(fail_first=2, fail_status=503)
    destination = tmp_path / "data.tar.gz"
    fetch(server.url, destination, checksum=Checksum("md5", PAYLOAD_MD5), **FAST)
    assert destination.read_bytes() == PAYLOAD
    assert len(server.plan.range_headers) == 3
    retry_lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[-1].strip() for line in retry_lines] == ["HTTP 503 Service Unavailable"] * 2
    assert "(attempt 2/5)" in retry_lines[0] and "(attempt 3/5)" in retry_lines[1]


def test_persistent_500_gives_up_after_attempts_and_keeps_nothing_half_written(server, tmp_path):
    server.plan = FaultPlan(fail_first=100, fail_status=500)
    destination = tmp_path / "data.tar.gz"
    with pytest.raises(UserError, match=r"failed after 3 attempts: HTTP 500"):
        fetch(server.url, destination, checksum=None, **THREE_ATTEMPTS)
    assert len(server.plan.range_headers) == 3
    assert not destination.exists()


def test_wrong_bytes_fail_checksum_and_leave_nothing(server, tmp_path):
    server.plan = FaultPlan(corrupt=True)
    destination = tmp_path / "data.tar.gz"
    with pytest.raises(UserError) as raised:
        fetch(server.url, destination, checksum=Checksum("md5", PAYLOAD_MD5), **FAST)
    corrupt_md5 = hashlib.md5(bytes(b ^ 0xFF for b in PAYLOAD[:16]) + PAYLOAD[16:]).hexdigest()
    message = str(raised.value)
    assert f"expected md5 {PAYLOAD_MD5}" in message and f"got {corrupt_md5}" in message
    assert "\n" not in message
    assert not destination.exists() and not part_of(destination).exists()
    assert len(server.plan.range_headers) == 1  # a wrong file is not retried


def test_404_is_not_retried(server, tmp_path):
    server.plan = FaultPlan(not_found=True)
    destination = tmp_path / "data.tar.gz"
    with pytest.raises(UserError, match=r"HTTP 404 Not Found"):
        fetch(server.url, destination, checksum=None, **FAST)
    assert len(server.plan.range_headers) == 1
    assert not destination.exists() and not part_of(destination).exists()


def test_unreachable_host_names_host_and_offline_hint(tmp_path, capsys):
    with socket.socket() as probe:  # a port that was free a moment ago, so nothing listens on it
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    destination = tmp_path / "data.tar.gz"
    with pytest.raises(UserError) as raised:
        fetch(f"http://127.0.0.1:{closed_port}/x.tar.gz", destination, checksum=None, **THREE_ATTEMPTS)
    message = str(raised.value)
    assert "127.0.0.1" in message and message.endswith(OFFLINE_HINT)
    assert "\n" not in message
    assert not destination.exists()
    assert capsys.readouterr().err.count("retrying") == 2


def test_sha256_prefix_is_accepted(server, tmp_path):
    destination = tmp_path / "data.tar.gz"
    prefix = hashlib.sha256(PAYLOAD).hexdigest()[:8]
    fetch(server.url, destination, checksum=Checksum("sha256", prefix.upper()), **FAST)
    assert destination.read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.plan = FaultPlan(drop_first=1, ignore_range=True)
    destination = tmp_path / "data.tar.gz"
    fetch(server.url, destination, checksum=Checksum("md5", PAYLOAD_MD5), **FAST)
    assert destination.read_bytes() == PAYLOAD
    assert server.plan.range_headers[1] == f"bytes={len(PAYLOAD) // 2}-"  # asked to resume, got 200


def test_slow_trickle_completes(server, tmp_path):
    server.plan = FaultPlan(trickle=True)
    destination = tmp_path / "data.tar.gz"
    fetch(server.url, destination, checksum=Checksum("md5", PAYLOAD_MD5), **FAST)
    assert destination.read_bytes() == PAYLOAD


def test_stale_partial_beyond_end_restarts_after_416(server, tmp_path):
    destination = tmp_path / "data.tar.gz"
    part_of(destination).write_bytes(b"x" * (len(PAYLOAD) + 10))  # left by a run against another file
    fetch(server.url, destination, checksum=Checksum("md5", PAYLOAD_MD5), **FAST)
    assert destination.read_bytes() == PAYLOAD
    assert server.plan.range_headers == [f"bytes={len(PAYLOAD) + 10}-", None]


def test_non_http_url_is_a_programming_error(tmp_path):
    with pytest.raises(ValueError, match="http"):
        fetch("file:///tmp/x.tar.gz", tmp_path / "x.tar.gz", checksum=None, **FAST)


def test_checksum_rejects_unknown_algorithm_and_short_prefix():
    with pytest.raises(UserError, match=r"'sha1'.*md5, sha256"):
        Checksum("sha1", "0" * 40)
    with pytest.raises(UserError, match=r"8 to 32 hex"):
        Checksum("md5", "abc")


def test_verify_checksum_and_file_digest(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(PAYLOAD)
    assert file_digest(path, "sha256") == hashlib.sha256(PAYLOAD).hexdigest()
    verify_checksum(path, Checksum("md5", PAYLOAD_MD5))
    with pytest.raises(
        UserError, match=rf"checksum mismatch for {re.escape(str(path))}: expected md5 0{{32}}, got {PAYLOAD_MD5}"
    ):
        verify_checksum(path, Checksum("md5", "0" * 32))


# --- bounds: size, time, redirects, the .part file ------------------------------------------------


def test_body_without_length_stops_at_max_bytes_and_keeps_nothing(server, tmp_path):
    server.plan = FaultPlan(no_length=True)
    destination = tmp_path / "data.tar.gz"
    with pytest.raises(UserError, match=f"over the {len(PAYLOAD) // 2} expected at most"):
        fetch(server.url, destination, checksum=None, **dict(FAST, max_bytes=len(PAYLOAD) // 2))
    assert not destination.exists() and not part_of(destination).exists()
    assert len(server.plan.range_headers) == 1  # too big is not retried


def test_content_length_over_max_bytes_is_refused_before_the_body(server, tmp_path):
    destination = tmp_path / "data.tar.gz"
    with pytest.raises(UserError, match=f"is {len(PAYLOAD)} bytes or more, over the {len(PAYLOAD) - 1}"):
        fetch(server.url, destination, checksum=None, **dict(FAST, max_bytes=len(PAYLOAD) - 1))
    assert not part_of(destination).exists()


def test_dripping_server_is_stopped_by_the_overall_deadline(server, tmp_path):
    # one byte every 0.05 s never trips the 5 s read timeout; 300 KB would take four hours
    server.plan = FaultPlan(drip_seconds=0.05)
    destination = tmp_path / "data.tar.gz"
    retry = dataclasses.replace(FAST_RETRIES, deadline_seconds=0.5)
    with pytest.raises(UserError, match="did not finish within its 0.5 s deadline"):
        fetch(server.url, destination, checksum=None, **dict(FAST, retry=retry))
    assert not destination.exists()
    assert 0 < part_of(destination).stat().st_size < len(PAYLOAD)  # kept, so a rerun resumes


@pytest.mark.parametrize("scheme", ["http", "ftp"])
def test_redirect_to_anything_but_https_is_refused(server, tmp_path, start_http_server, scheme):
    target = start_http_server(FaultyHandler, plan=FaultPlan())
    redirect = target.url.replace("http", scheme, 1)
    server.plan = FaultPlan(redirect_to=redirect)
    destination = tmp_path / "data.tar.gz"
    with pytest.raises(UserError, match=f"redirects to {re.escape(redirect)}: only redirects to https"):
        fetch(server.url, destination, checksum=None, **FAST)
    assert target.plan.range_headers == []  # never asked
    assert not destination.exists() and not part_of(destination).exists()


def test_symlink_planted_at_the_part_path_is_refused_and_its_target_untouched(server, tmp_path):
    destination = tmp_path / "data.tar.gz"
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    part_of(destination).symlink_to(victim)
    with pytest.raises(UserError, match="is not a regular file"):
        fetch(server.url, destination, checksum=None, **FAST)
    assert victim.read_bytes() == b"precious"
    assert server.plan.range_headers == []  # refused before asking the server


def test_part_file_is_opened_without_following_a_symlink(tmp_path):
    # a symlink planted between fetch's check and its open: O_NOFOLLOW makes the open itself fail

    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (tmp_path / "x.part").symlink_to(victim)
    for append in (False, True):
        with pytest.raises(OSError):
            _open_partial(tmp_path / "x.part", append=append)
    assert victim.read_bytes() == b"precious"


def test_imagenet_weights_are_pinned_by_full_sha256_consistent_with_the_url():
    assert re.fullmatch(r"[0-9a-f]{64}", IMAGENET_SHA256)
    assert IMAGENET_URL.endswith(f"resnet18-{IMAGENET_SHA256[:8]}.pth")  # torchvision's file name: the first 32 bits
    assert IMAGENET_BYTES == 46_830_571
