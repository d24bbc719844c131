"""Write a synthetic cifar-100-python.tar.gz or cifar-10-python.tar.gz in the real format: the offline stand-in.

The real archive holds three pickles written by Python 2 (protocol 2): every string, and the image
array's raw bytes, is a Python 2 `str` (SHORT_BINSTRING/BINSTRING). This writer emits the same
opcodes, so every reader of the real archive (ours, torchvision's) reads it unchanged. The same
arguments always give the same bytes.
"""

import contextlib
import gzip
import io
import pickle
import struct
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from transfer.atomic import atomic_path
from transfer.datasets.cifar_format import (
    ARCHIVE_DIR,
    CIFAR10_ARCHIVE_DIR,
    CIFAR10_META_MEMBER,
    CIFAR10_NUM_CLASSES,
    CIFAR10_README_MEMBER,
    CIFAR10_TEST_MEMBER,
    CIFAR10_TRAIN_MEMBERS,
    FINE_PER_COARSE,
    IMAGE_CHANNELS,
    IMAGE_HEIGHT,
    IMAGE_WIDTH,
    META_MEMBER,
    NUM_CLASSES,
    NUM_COARSE_CLASSES,
    ROW_LENGTH,
    STRAY_MEMBER,
    TEST_MEMBER,
    TRAIN_MEMBER,
)

# ---------------------------------------------------------------------------------------------
# A Python-2-style protocol-2 pickler


@dataclass(frozen=True, eq=False)
class _Py2Global:
    """A module-level name written as a GLOBAL opcode, spelled as Python 2's numpy spelled it."""

    module: str
    name: str


@dataclass(frozen=True, eq=False)
class _Py2RawBytes:
    """An array's buffer, written as one Python 2 str (BINSTRING) without copying it."""

    array: np.ndarray  # C-contiguous


# Singletons, so the pickler's memo writes each GLOBAL once and BINGETs it afterwards, as Python 2 did.
_RECONSTRUCT = _Py2Global("numpy.core.multiarray", "_reconstruct")
_NDARRAY = _Py2Global("numpy", "ndarray")
_DTYPE = _Py2Global("numpy", "dtype")
_UINT8_DTYPE = np.dtype(np.uint8)
_BINSTRING_MAX = 2**31 - 1  # BINSTRING's length is a signed 4-byte int


class _Py2Pickler(pickle._Pickler):
    """Protocol 2 as Python 2 wrote it: str is a byte string, uint8 arrays reduce through numpy.core."""

    dispatch = pickle._Pickler.dispatch.copy()

    def __init__(self, file: io.BufferedIOBase) -> None:
        super().__init__(file, protocol=2)

    def _write_binstring(self, data: bytes | memoryview) -> None:
        size = len(data)
        if size < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([size]))
        elif size <= _BINSTRING_MAX:
            self.write(pickle.BINSTRING + struct.pack("<i", size))
        else:
            raise ValueError(f"a Python 2 str holds at most {_BINSTRING_MAX} bytes, got {size}")
        self.write(data)

    def save_py2_str(self, text: str) -> None:
        self._write_binstring(text.encode("latin1"))
        self.memoize(text)

    dispatch[str] = save_py2_str

    def save_py2_raw_bytes(self, raw: _Py2RawBytes) -> None:
        self._write_binstring(memoryview(raw.array).cast("B"))
        self.memoize(raw)

    dispatch[_Py2RawBytes] = save_py2_raw_bytes

    def save_py2_global(self, name: _Py2Global) -> None:
        # written by hand: save_global would look the name up, and numpy 2 lives in numpy._core
        self.write(pickle.GLOBAL + f"{name.module}\n{name.name}\n".encode("ascii"))
        self.memoize(name)

    dispatch[_Py2Global] = save_py2_global

    def save_uint8_dtype(self, dtype: np.dtype) -> None:
        # dtype('u1') reduces to dtype('u1', 0, 1) then BUILD (version, byteorder, subarray, names, fields,
        # elsize, alignment, flags); '|' means byte order not applicable
        self.save(_DTYPE)
        self.save(("u1", 0, 1))
        self.write(pickle.REDUCE)
        self.memoize(dtype)
        self.save((3, "|", None, None, None, -1, -1, 0))
        self.write(pickle.BUILD)

    dispatch[type(_UINT8_DTYPE)] = save_uint8_dtype

    def save_uint8_ndarray(self, array: np.ndarray) -> None:
        # ndarray reduces to _reconstruct(ndarray, (0,), 'b') then BUILD (version, shape, dtype, fortran, raw bytes)
        if array.dtype != _UINT8_DTYPE:
            raise TypeError(f"only uint8 arrays are written, got {array.dtype}")
        self.save(_RECONSTRUCT)
        self.save((_NDARRAY, (0,), "b"))
        self.write(pickle.REDUCE)
        self.memoize(array)
        state = (
            1,
            tuple(int(size) for size in array.shape),
            array.dtype,
            False,
            _Py2RawBytes(np.ascontiguousarray(array)),
        )
        self.save(state)
        self.write(pickle.BUILD)

    dispatch[np.ndarray] = save_uint8_ndarray


def _py2_pickle(content: object) -> bytes:
    """Pickle content as Python 2 with protocol 2 would have."""
    buffer = io.BytesIO()
    _Py2Pickler(buffer).dump(content)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# Synthetic images: per class, two colours in stripes of a class-specific angle, period and phase


_SYNTHETIC_CHUNK = 2048  # images rendered at once: ~25 MB per float32 (chunk, 3, 32, 32) array
_COLOUR_RANGE = (30.0, 225.0)  # uint8 intensity range of each class's two stripe colours
_PERIOD_RANGE = (4.0, 16.0)  # stripe period in pixels: from fine to a couple of bands per image
_MAX_SHIFT = 3  # pixels: each image is its class template shifted by up to this in x and y
_COLOUR_JITTER_STD = 20.0  # uint8 levels: per-image, per-channel offset, so colour alone is ambiguous
_NOISE_STD = 24.0  # uint8 levels: per-pixel gaussian noise


@dataclass(frozen=True)
class _ClassPatterns:
    colour_a: np.ndarray  # (100, 3) float32: colour where the stripe wave is 0
    colour_b: np.ndarray  # (100, 3) float32: colour where the stripe wave is 1
    angle: np.ndarray  # (100,) float32 radians, stripe normal direction
    frequency: np.ndarray  # (100,) float32 cycles per pixel
    phase: np.ndarray  # (100,) float32 radians


def _class_patterns(rng: np.random.Generator, num_classes: int = NUM_CLASSES) -> _ClassPatterns:
    def draw(low: float, high: float, shape: tuple[int, ...]) -> np.ndarray:
        return rng.uniform(low, high, size=shape).astype(np.float32)

    return _ClassPatterns(
        colour_a=draw(*_COLOUR_RANGE, (num_classes, IMAGE_CHANNELS)),
        colour_b=draw(*_COLOUR_RANGE, (num_classes, IMAGE_CHANNELS)),
        angle=draw(0.0, np.pi, (num_classes,)),
        frequency=1.0 / draw(*_PERIOD_RANGE, (num_classes,)),
        phase=draw(0.0, 2 * np.pi, (num_classes,)),
    )


def _render_rows(labels: np.ndarray, patterns: _ClassPatterns, rng: np.random.Generator) -> np.ndarray:
    """Render one image per label as CIFAR rows: (N,) int64 -> (N, 3072) uint8, CHW."""
    rows = np.empty((labels.shape[0], ROW_LENGTH), dtype=np.uint8)
    y, x = np.mgrid[0:IMAGE_HEIGHT, 0:IMAGE_WIDTH].astype(np.float32)  # (32, 32) each
    for start in range(0, labels.shape[0], _SYNTHETIC_CHUNK):
        chunk = labels[start : start + _SYNTHETIC_CHUNK]
        count = chunk.shape[0]
        shift = rng.integers(-_MAX_SHIFT, _MAX_SHIFT + 1, size=(count, 2)).astype(np.float32)  # (n, 2) dx, dy
        cos = np.cos(patterns.angle[chunk])[:, None, None]  # (n, 1, 1)
        sin = np.sin(patterns.angle[chunk])[:, None, None]
        along = (x + shift[:, 0, None, None]) * cos + (y + shift[:, 1, None, None]) * sin  # (n, 32, 32) pixels
        wave = 0.5 + 0.5 * np.sin(
            2 * np.pi * patterns.frequency[chunk, None, None] * along + patterns.phase[chunk, None, None]
        )
        colour_a = patterns.colour_a[chunk][:, :, None, None]  # (n, 3, 1, 1)
        colour_b = patterns.colour_b[chunk][:, :, None, None]
        images = colour_a + (colour_b - colour_a) * wave[:, None]  # (n, 3, 32, 32)
        images += _COLOUR_JITTER_STD * rng.standard_normal((count, IMAGE_CHANNELS, 1, 1), dtype=np.float32)
        images += _NOISE_STD * rng.standard_normal(images.shape, dtype=np.float32)
        np.clip(np.rint(images, out=images), 0, 255, out=images)
        rows[start : start + count] = images.reshape(count, ROW_LENGTH)
    return rows


def _synthetic_split(
    size: int, first_index: int, batch_label: str, patterns: _ClassPatterns, rng: np.random.Generator
) -> dict:
    """One split's pickle content, keys in the real archive's order."""
    fine_labels = rng.permutation(np.arange(size, dtype=np.int64) % NUM_CLASSES)  # balanced, shuffled
    coarse_labels = fine_labels // FINE_PER_COARSE
    return {
        "filenames": [f"synthetic_s_{index:06d}.png" for index in range(first_index, first_index + size)],
        "batch_label": batch_label,
        "fine_labels": fine_labels.tolist(),
        "coarse_labels": coarse_labels.tolist(),
        "data": _render_rows(fine_labels, patterns, rng),
    }


# ---------------------------------------------------------------------------------------------
# Writing

_GZIP_LEVEL = 1  # noisy pixels barely compress: levels 1 and 6 differ by 0.04% in size, 15% in time
_STRAY_CONTENT = b"synthetic CIFAR-100 archive; this member mirrors the stray editor backup in the real one\n"


def write_synthetic_archive(path: Path, *, train_size: int, test_size: int, seed: int) -> None:
    """Write a synthetic cifar-100-python.tar.gz in the real format, byte-identical for the same arguments."""
    if train_size < 0 or test_size < 0:
        raise ValueError(f"split sizes must be >= 0, got train_size={train_size}, test_size={test_size}")
    patterns_rng, train_rng, test_rng = (
        np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(3)
    )
    patterns = _class_patterns(patterns_rng)  # shared by both splits: test images come from the train classes
    meta = {
        "fine_label_names": [f"class_{label:03d}" for label in range(NUM_CLASSES)],
        "coarse_label_names": [f"superclass_{label:02d}" for label in range(NUM_COARSE_CLASSES)],
    }
    with _deterministic_tar(Path(path)) as tar:
        tar.addfile(_tar_info(ARCHIVE_DIR, tarfile.DIRTYPE, 0o755, 0))
        _add_member(tar, META_MEMBER, _py2_pickle(meta))
        _add_member(tar, STRAY_MEMBER, _STRAY_CONTENT)
        # one split at a time, so only one split's pixels and pickle are in memory
        test = _synthetic_split(test_size, train_size, "testing batch 1 of 1", patterns, test_rng)
        _add_member(tar, TEST_MEMBER, _py2_pickle(test))
        del test
        train = _synthetic_split(train_size, 0, "training batch 1 of 1", patterns, train_rng)
        _add_member(tar, TRAIN_MEMBER, _py2_pickle(train))


@contextlib.contextmanager
def _deterministic_tar(path: Path) -> Iterator[tarfile.TarFile]:
    """A gzip tar written atomically to path, whose bytes depend only on what is added."""
    with atomic_path(path) as temp_path:
        with open(temp_path, "wb") as raw_file:
            # GzipFile by hand: tarfile's "w:gz" would stamp the temp file's name and the time into the header
            with gzip.GzipFile(
                filename="", mode="wb", fileobj=raw_file, mtime=0, compresslevel=_GZIP_LEVEL
            ) as gzip_file:
                with tarfile.open(fileobj=gzip_file, mode="w", format=tarfile.GNU_FORMAT) as tar:
                    yield tar


_CIFAR10_README = b"<html><body>synthetic CIFAR-10 archive; the real one ships a readme.html here</body></html>\n"


def write_synthetic_cifar10_archive(path: Path, *, train_size: int, test_size: int, seed: int) -> None:
    """Write a synthetic cifar-10-python.tar.gz in the real format (five training batches), byte-identical per seed."""
    if train_size < 0 or test_size < 0:
        raise ValueError(f"split sizes must be >= 0, got train_size={train_size}, test_size={test_size}")
    patterns_rng, train_rng, test_rng = (
        np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(3)
    )
    patterns = _class_patterns(patterns_rng, CIFAR10_NUM_CLASSES)
    batch_sizes = [len(part) for part in np.array_split(np.arange(train_size), len(CIFAR10_TRAIN_MEMBERS))]
    meta = {
        "num_cases_per_batch": max(batch_sizes),
        "label_names": [f"class_{label:02d}" for label in range(CIFAR10_NUM_CLASSES)],
        "num_vis": ROW_LENGTH,
    }
    with _deterministic_tar(Path(path)) as tar:
        tar.addfile(_tar_info(CIFAR10_ARCHIVE_DIR, tarfile.DIRTYPE, 0o755, 0))
        _add_member(tar, CIFAR10_META_MEMBER, _py2_pickle(meta))
        _add_member(tar, CIFAR10_README_MEMBER, _CIFAR10_README)
        first_index = 0
        for number, (member, size) in enumerate(zip(CIFAR10_TRAIN_MEMBERS, batch_sizes), start=1):
            batch = _cifar10_batch(size, first_index, f"training batch {number} of 5", patterns, train_rng)
            _add_member(tar, member, _py2_pickle(batch))
            first_index += size
        test = _cifar10_batch(test_size, first_index, "testing batch 1 of 1", patterns, test_rng)
        _add_member(tar, CIFAR10_TEST_MEMBER, _py2_pickle(test))


def _cifar10_batch(
    size: int, first_index: int, batch_label: str, patterns: _ClassPatterns, rng: np.random.Generator
) -> dict:
    """One CIFAR-10 batch's pickle content, keys in the real archive's order."""
    labels = rng.permutation(np.arange(first_index, first_index + size, dtype=np.int64) % CIFAR10_NUM_CLASSES)
    return {
        "batch_label": batch_label,
        "labels": labels.tolist(),
        "data": _render_rows(labels, patterns, rng),
        "filenames": [f"synthetic_s_{index:06d}.png" for index in range(first_index, first_index + size)],
    }


def _tar_info(name: str, kind: bytes, mode: int, size: int) -> tarfile.TarInfo:
    """A member header with fixed owner and time, so the archive's bytes depend only on its contents."""
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size = kind, mode, size
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    return info


def _add_member(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    tar.addfile(_tar_info(name, tarfile.REGTYPE, 0o644, len(payload)), io.BytesIO(payload))
