"""File digests and expected checksums: the one hash helper every stage may share.

Kept apart from the HTTP client (fetch.py) because an import is a DVC dependency: the train stage
hashes its inputs through this module and must not rerun when download retries change.
"""

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from transfer.errors import UserError

CHUNK_BYTES = 1 << 20  # 1 MiB: bounded memory, few syscalls
SUPPORTED_ALGORITHMS = ("md5", "sha256")
MIN_PREFIX_HEX = 8  # torch hub style prefix; shorter ones would accept almost any file


@dataclass(frozen=True)
class Checksum:
    """Expected digest of a download; expected may be a prefix of the full hex digest."""

    algorithm: str  # "md5" or "sha256"
    expected: str  # full hex digest or a prefix of at least MIN_PREFIX_HEX characters

    def __post_init__(self) -> None:
        """Reject an unknown algorithm or a digest that is not hex of a plausible length."""
        check_algorithm(self.algorithm)
        full_length = hashlib.new(self.algorithm).digest_size * 2
        if not re.fullmatch(rf"[0-9a-fA-F]{{{MIN_PREFIX_HEX},{full_length}}}", self.expected):
            raise UserError(
                f"checksum {self.expected!r} is not a {self.algorithm} digest: expected "
                f"{MIN_PREFIX_HEX} to {full_length} hex characters"
            )

    def matches(self, digest: str) -> bool:
        """Whether a full hex digest starts with the expected (possibly shortened) one."""
        return digest.lower().startswith(self.expected.lower())


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in 1 MiB chunks so large archives never sit in memory."""
    check_algorithm(algorithm)
    digest = hashlib.new(algorithm)
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(path: Path, checksum: Checksum) -> None:
    """Raise UserError unless the file's digest matches the expected one."""
    actual = file_digest(path, checksum.algorithm)
    if not checksum.matches(actual):
        raise UserError(
            f"checksum mismatch for {path}: expected {checksum.algorithm} {checksum.expected}, got {actual}"
        )


def check_algorithm(algorithm: str) -> None:
    """Raise UserError unless algorithm is one we support."""
    if algorithm not in SUPPORTED_ALGORITHMS:
        raise UserError(
            f"checksum algorithm {algorithm!r} is not supported; use one of {', '.join(SUPPORTED_ALGORITHMS)}"
        )
