"""Read the CIFAR-100 python archive (the official one, a copy, or the synthetic stand-in).

The real `cifar-100-python.tar.gz` holds three pickles written by Python 2 (protocol 2): every
string, and the image array's raw bytes, is a Python 2 `str` (SHORT_BINSTRING/BINSTRING), so
Python 3 must decode them with encoding="latin1", as torchvision does.
synthetic_archive.py writes the same opcodes.
"""

import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from transfer.cifar_format import (
    IMAGE_CHANNELS,
    IMAGE_HEIGHT,
    IMAGE_WIDTH,
    META_MEMBER,
    NUM_CLASSES,
    NUM_COARSE_CLASSES,
    ROW_LENGTH,
    TEST_MEMBER,
    TRAIN_MEMBER,
)
from transfer.errors import UserError


@dataclass(frozen=True)
class CifarSplit:
    """One split of CIFAR-100 as arrays."""

    images: np.ndarray  # (N, 32, 32, 3) uint8, HWC, C-contiguous
    fine_labels: np.ndarray  # (N,) int64 in [0, 100)
    coarse_labels: np.ndarray  # (N,) int64 in [0, 20)


@dataclass(frozen=True)
class CifarArchive:
    """The decoded contents of a cifar-100-python.tar.gz."""

    train: CifarSplit
    test: CifarSplit
    fine_label_names: tuple[str, ...]  # 100 names, indexed by fine label
    coarse_label_names: tuple[str, ...]  # 20 names, indexed by coarse label


# ---------------------------------------------------------------------------------------------
# Reading


def read_archive(path: Path) -> CifarArchive:
    """Decode and validate a CIFAR-100 python archive; raise UserError naming the file if it is bad."""
    path = Path(path)
    payloads = _read_members(path, (TRAIN_MEMBER, TEST_MEMBER, META_MEMBER))
    meta = _unpickle(path, META_MEMBER, payloads.pop(META_MEMBER))
    fine_label_names = _label_names(path, META_MEMBER, meta, "fine_label_names", NUM_CLASSES)
    coarse_label_names = _label_names(path, META_MEMBER, meta, "coarse_label_names", NUM_COARSE_CLASSES)
    train = _split(path, TRAIN_MEMBER, _unpickle(path, TRAIN_MEMBER, payloads.pop(TRAIN_MEMBER)))
    test = _split(path, TEST_MEMBER, _unpickle(path, TEST_MEMBER, payloads.pop(TEST_MEMBER)))
    return CifarArchive(train, test, fine_label_names, coarse_label_names)


def _read_members(path: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """Read the named members' bytes in one streaming pass over the gzip tar."""
    if not path.is_file():
        raise UserError(f"{path}: archive not found")
    payloads: dict[str, bytes] = {}
    try:
        with tarfile.open(path, mode="r|gz") as tar:
            for member in tar:
                if member.name in names and member.isfile():
                    payloads[member.name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise UserError(f"{path}: not a readable gzip tar archive (truncated or corrupt?): {error}") from None
    missing = [name for name in names if name not in payloads]
    if missing:
        raise UserError(f"{path}: archive lacks member {missing[0]} (is this cifar-100-python.tar.gz?)")
    return payloads


def _unpickle(path: Path, member: str, payload: bytes) -> dict:
    """Decode one member exactly as torchvision does; it must hold a dict."""
    try:
        content = pickle.loads(payload, encoding="latin1")
    except Exception as error:  # a corrupt pickle can fail in many ways; all mean "bad file"
        raise UserError(f"{path}: member {member} is not a readable pickle: {type(error).__name__}: {error}") from None
    if not isinstance(content, dict):
        raise UserError(f"{path}: member {member} holds a {type(content).__name__}, expected a dict")
    return content


def _require_key(path: Path, member: str, content: dict, key: str) -> object:
    if key not in content:
        raise UserError(f"{path}: member {member} lacks key '{key}' (has {sorted(map(str, content))})")
    return content[key]


def _label_names(path: Path, member: str, meta: dict, key: str, expected: int) -> tuple[str, ...]:
    names = _require_key(path, member, meta, key)
    if not isinstance(names, (list, tuple)) or not all(isinstance(name, str) for name in names):
        raise UserError(f"{path}: member {member}: '{key}' is not a list of strings")
    if len(names) != expected:
        raise UserError(f"{path}: member {member}: '{key}' has {len(names)} names, expected {expected}")
    return tuple(names)


def _split(path: Path, member: str, content: dict) -> CifarSplit:
    data = _require_key(path, member, content, "data")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != ROW_LENGTH:
        description = (
            f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        )
        raise UserError(f"{path}: member {member}: 'data' is {description}, expected uint8 of shape (N, {ROW_LENGTH})")
    count = data.shape[0]
    fine_labels = _labels(path, member, content, "fine_labels", count, NUM_CLASSES)
    coarse_labels = _labels(path, member, content, "coarse_labels", count, NUM_COARSE_CLASSES)
    # rows are CHW (1024 red, 1024 green, 1024 blue, each row-major 32x32):
    # (N, 3072) -> (N, 3, 32, 32) -> (N, 32, 32, 3)
    images = data.reshape(count, IMAGE_CHANNELS, IMAGE_HEIGHT, IMAGE_WIDTH).transpose(0, 2, 3, 1)
    return CifarSplit(np.ascontiguousarray(images), fine_labels, coarse_labels)


def _labels(path: Path, member: str, content: dict, key: str, count: int, num_classes: int) -> np.ndarray:
    raw_labels = _require_key(path, member, content, key)
    try:
        labels = np.asarray(raw_labels)
    except ValueError:
        labels = np.asarray(None)  # ragged: fails the check below
    if labels.ndim != 1 or not (labels.size == 0 or np.issubdtype(labels.dtype, np.integer)):
        raise UserError(f"{path}: member {member}: '{key}' is not a flat list of integers")
    if labels.shape[0] != count:
        raise UserError(f"{path}: member {member}: '{key}' has {labels.shape[0]} labels for {count} images")
    labels = labels.astype(np.int64)
    if count and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(
            f"{path}: member {member}: '{key}' ranges over [{labels.min()}, {labels.max()}], "
            f"expected [0, {num_classes - 1}]"
        )
    return labels
