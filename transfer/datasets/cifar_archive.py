"""Read the CIFAR-100 or CIFAR-10 python archive (the official one, a copy, or the synthetic stand-in).

The real `cifar-100-python.tar.gz` holds three pickles written by Python 2 (protocol 2): every
string, and the image array's raw bytes, is a Python 2 `str` (SHORT_BINSTRING/BINSTRING), so
Python 3 must decode them with encoding="latin1", as torchvision does.
synthetic_archive.py writes the same opcodes.

A pickle can name any importable callable and call it while it loads (a `GLOBAL posix.system` runs a
command), so the members are read by a restricted unpickler: it resolves only the three numpy names
the official archive uses and refuses every other before anything is called. A member's size is also
bounded before it is read, from the format (see _member_size_limit).
"""

import io
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from transfer.datasets.cifar_format import (
    ARCHIVE_DIR,
    CIFAR10_ARCHIVE_DIR,
    CIFAR10_BATCH_IMAGES,
    CIFAR10_META_MEMBER,
    CIFAR10_NUM_CLASSES,
    CIFAR10_TEST_MEMBER,
    CIFAR10_TRAIN_MEMBERS,
    IMAGE_CHANNELS,
    IMAGE_HEIGHT,
    IMAGE_WIDTH,
    META_MEMBER,
    NUM_CLASSES,
    NUM_COARSE_CLASSES,
    ROW_LENGTH,
    TEST_IMAGES,
    TEST_MEMBER,
    TRAIN_IMAGES,
    TRAIN_MEMBER,
)
from transfer.errors import UserError


@dataclass(frozen=True)
class CifarSplit:
    """One split of CIFAR-100 or CIFAR-10 as arrays."""

    images: np.ndarray  # (N, 32, 32, 3) uint8, HWC, C-contiguous
    fine_labels: np.ndarray  # (N,) int64 in [0, classes)
    coarse_labels: np.ndarray | None  # (N,) int64 in [0, 20); None for CIFAR-10, which has no superclasses


@dataclass(frozen=True)
class CifarArchive:
    """The decoded contents of a cifar-100-python.tar.gz or cifar-10-python.tar.gz."""

    train: CifarSplit
    test: CifarSplit
    fine_label_names: tuple[str, ...]  # 100 (or 10) names, indexed by fine label
    coarse_label_names: tuple[str, ...]  # 20 names, indexed by coarse label; () for CIFAR-10


# ---------------------------------------------------------------------------------------------
# Reading


def read_archive(path: Path, dataset: str = "cifar100") -> CifarArchive:
    """Decode and validate a CIFAR-100 (or, with dataset "cifar10", CIFAR-10) python archive; UserError if bad."""
    path = Path(path)
    if dataset == "cifar10":
        return _read_cifar10(path)
    payloads = _read_members(path, (TRAIN_MEMBER, TEST_MEMBER, META_MEMBER), dataset)
    meta = _unpickle(path, META_MEMBER, payloads.pop(META_MEMBER))
    fine_label_names = _label_names(path, META_MEMBER, meta, "fine_label_names", NUM_CLASSES)
    coarse_label_names = _label_names(path, META_MEMBER, meta, "coarse_label_names", NUM_COARSE_CLASSES)
    train = _split(path, TRAIN_MEMBER, _unpickle(path, TRAIN_MEMBER, payloads.pop(TRAIN_MEMBER)))
    test = _split(path, TEST_MEMBER, _unpickle(path, TEST_MEMBER, payloads.pop(TEST_MEMBER)))
    return CifarArchive(train, test, fine_label_names, coarse_label_names)


def _read_cifar10(path: Path) -> CifarArchive:
    """Decode a CIFAR-10 archive: five training batches joined in order, one test batch, no superclasses."""
    payloads = _read_members(path, (*CIFAR10_TRAIN_MEMBERS, CIFAR10_TEST_MEMBER, CIFAR10_META_MEMBER), "cifar10")
    meta = _unpickle(path, CIFAR10_META_MEMBER, payloads.pop(CIFAR10_META_MEMBER))
    label_names = _label_names(path, CIFAR10_META_MEMBER, meta, "label_names", CIFAR10_NUM_CLASSES)
    batches = [_cifar10_split(path, member, payloads.pop(member)) for member in CIFAR10_TRAIN_MEMBERS]
    images = np.concatenate([batch.images for batch in batches])
    train = CifarSplit(images, np.concatenate([batch.fine_labels for batch in batches]), None)
    test = _cifar10_split(path, CIFAR10_TEST_MEMBER, payloads.pop(CIFAR10_TEST_MEMBER))
    return CifarArchive(train, test, label_names, ())


def _cifar10_split(path: Path, member: str, payload: bytes) -> CifarSplit:
    """One CIFAR-10 batch: 'data' rows as in CIFAR-100, one 'labels' list."""
    content = _unpickle(path, member, payload)
    images = _images(path, member, content)
    return CifarSplit(images, _labels(path, member, content, "labels", len(images), CIFAR10_NUM_CLASSES), None)


# The top-level folder of each format, to say which one a wrong archive looks like.
_FORMAT_DIRS = {"cifar100": ARCHIVE_DIR, "cifar10": CIFAR10_ARCHIVE_DIR}


def _read_members(path: Path, names: tuple[str, ...], dataset: str) -> dict[str, bytes]:
    """Read the named members' bytes in one streaming pass over the gzip tar."""
    if not path.is_file():
        raise UserError(f"{path}: archive not found")
    payloads: dict[str, bytes] = {}
    seen_dirs: set[str] = set()
    try:
        with tarfile.open(path, mode="r|gz") as tar:
            for member in tar:
                seen_dirs.add(member.name.split("/", 1)[0])
                if member.name in names and member.isfile():
                    _require_size_within_format(path, member)
                    payloads[member.name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise UserError(f"{path}: not a readable gzip tar archive (truncated or corrupt?): {error}") from None
    missing = [name for name in names if name not in payloads]
    if missing:
        looks_like = [other for other, folder in _FORMAT_DIRS.items() if other != dataset and folder in seen_dirs]
        if looks_like:
            raise UserError(
                f"{path}: this looks like a {_DISPLAY_NAMES[looks_like[0]]} archive, but data.dataset = {dataset} "
                f"(set data.dataset: {looks_like[0]}, or give a {_DISPLAY_NAMES[dataset]} archive)"
            )
        raise UserError(f"{path}: archive lacks member {missing[0]} (is this a {_DISPLAY_NAMES[dataset]} archive?)")
    return payloads


_DISPLAY_NAMES = {"cifar100": "CIFAR-100 (cifar-100-python.tar.gz)", "cifar10": "CIFAR-10 (cifar-10-python.tar.gz)"}


# Bytes per image beyond its 3072 pixels: the official train member spends about 31 (a filename of up
# to ~30 characters with its opcodes, two label ints of 2-3 bytes each); 256 leaves 8x room for longer
# names. The fixed allowance covers the dict's keys, batch_label and, for meta, the 120 class names
# (the official meta member is about 1.5 KB).
_BYTES_PER_IMAGE = ROW_LENGTH + 256
_FIXED_BYTES = 64 * 1024
_MEMBER_IMAGES = {
    TRAIN_MEMBER: TRAIN_IMAGES,
    TEST_MEMBER: TEST_IMAGES,
    CIFAR10_TEST_MEMBER: CIFAR10_BATCH_IMAGES,
    **{member: CIFAR10_BATCH_IMAGES for member in CIFAR10_TRAIN_MEMBERS},
}


def _member_size_limit(member: str) -> int:
    """The most bytes a member of this format can need: its split's image count at the official sizes."""
    images = _MEMBER_IMAGES.get(member, 0)  # meta holds no images
    return images * _BYTES_PER_IMAGE + _FIXED_BYTES


def _require_size_within_format(path: Path, member: tarfile.TarInfo) -> None:
    """Refuse a member larger than the format allows, before reading it into memory."""
    limit = _member_size_limit(member.name)
    if member.size > limit:
        raise UserError(
            f"{path}: member {member.name} is {member.size} bytes, more than the {limit} its format can need"
        )


class _Refused(pickle.UnpicklingError):
    """A pickle named a global outside the allowed numpy names."""


_ARRAY_CLASS_TOKEN = object()  # stands for numpy.ndarray: an argument of _reconstruct, never itself callable
_NUMPY_RECONSTRUCT = np.empty(0).__reduce__()[0]  # numpy's own _reconstruct, whichever module it lives in now
_PLAIN_DTYPE_KINDS = "biuf"  # bool, int, uint, float: no object or structured dtypes, whose state holds objects


def _reconstruct(array_class: object, shape: object, type_code: object) -> np.ndarray:
    """numpy's _reconstruct, limited to an empty plain ndarray that BUILD then fills from the pickled bytes."""
    if array_class is not _ARRAY_CLASS_TOKEN:
        raise _Refused("_reconstruct may only build a numpy.ndarray")
    return _NUMPY_RECONSTRUCT(np.ndarray, shape, type_code)


def _dtype(spec: object, align: object = False, copy: object = True) -> np.dtype:
    """numpy.dtype, limited to plain numeric dtypes."""
    dtype = np.dtype(spec, align=bool(align), copy=bool(copy))
    if dtype.kind not in _PLAIN_DTYPE_KINDS:
        raise _Refused(f"dtype {dtype} is not a plain numeric dtype")
    return dtype


# The only globals the official archive's pickles use, under Python 2 numpy's spelling (numpy.core) and
# numpy 2's (numpy._core, what pickle.dumps writes today).
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _ARRAY_CLASS_TOKEN,
    ("numpy", "dtype"): _dtype,
}


class _ArchiveUnpickler(pickle.Unpickler):
    """An unpickler that resolves only _ALLOWED_GLOBALS: loading can build arrays, never call anything else."""

    def find_class(self, module: str, name: str) -> object:
        """Return the allowed stand-in for module.name, or refuse before it is imported."""
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise _Refused(f"refused global {module}.{name}")
        return allowed

    def persistent_load(self, pid: object) -> object:
        """The format has no persistent ids."""
        raise _Refused("refused persistent id")


def _unpickle(path: Path, member: str, payload: bytes) -> dict:
    """Decode one member as torchvision does, resolving only numpy's array globals; it must hold a dict."""
    try:
        content = _ArchiveUnpickler(io.BytesIO(payload), encoding="latin1").load()
    except _Refused as error:
        allowed = ", ".join(sorted({f"{module}.{name}" for module, name in _ALLOWED_GLOBALS}))
        raise UserError(
            f"{path}: member {member}: {error}; a CIFAR-100 pickle may only use {allowed} (nothing was run)"
        ) from None
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
    images = _images(path, member, content)
    fine_labels = _labels(path, member, content, "fine_labels", len(images), NUM_CLASSES)
    coarse_labels = _labels(path, member, content, "coarse_labels", len(images), NUM_COARSE_CLASSES)
    return CifarSplit(images, fine_labels, coarse_labels)


def _images(path: Path, member: str, content: dict) -> np.ndarray:
    """(N, 32, 32, 3) uint8 HWC from a member's 'data' rows."""
    data = _require_key(path, member, content, "data")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != ROW_LENGTH:
        description = (
            f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        )
        raise UserError(f"{path}: member {member}: 'data' is {description}, expected uint8 of shape (N, {ROW_LENGTH})")
    count = data.shape[0]
    # rows are CHW (1024 red, 1024 green, 1024 blue, each row-major 32x32):
    # (N, 3072) -> (N, 3, 32, 32) -> (N, 32, 32, 3)
    images = data.reshape(count, IMAGE_CHANNELS, IMAGE_HEIGHT, IMAGE_WIDTH).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images)


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
