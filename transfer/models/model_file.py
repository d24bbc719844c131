"""Read a models/<strategy>.pt file and check all of it before any network is built.

A model file may come from anyone (a colleague, `dvc artifacts get`), so every value that decides an
allocation or a shape is checked first: torch.load with weights_only=True runs no code, but a head of
hidden_size 10**9 or an image_size of 40000 would still ask for gigabytes, and a wrong class count
would end in a traceback deep inside load_state_dict.

Nothing is materialised before it is bounded: only a regular file is opened (a FIFO would block forever);
its zip directory must hold uncompressed records only, as torch.save writes them (a deflated record of
2 MB can expand to gigabytes), a bounded pickle and a bounded record count; the tensors are then
memory-mapped, not read (torch.load(mmap=True)), until the config has said which ones of which dtype and
shape the network needs. Only dense, finite CPU tensors of exactly that dtype and shape, each owning no
more storage than its elements, pass; they are then copied into memory.
"""

import dataclasses
import math
import os
import stat
import struct
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from transfer.config import (
    ARCHITECTURES,
    CIFAR_STORED_SIZE,
    MAX_IMAGE_SIZE,
    MIN_IMAGE_SIZE,
    MIN_STORED_SIZE,
    STEMS,
    HeadConfig,
)
from transfer.errors import UserError
from transfer.models.network import DEFAULT_ARCH, inference_architecture
from transfer.printable import printable

MODEL_KEYS = ("state_dict", "class_names", "normalization", "config")  # of a models/<strategy>.pt file
HEAD_KEYS = tuple(field.name for field in dataclasses.fields(HeadConfig))
CHANNELS = 3  # mean and std hold one value per RGB channel
# data.pkl holds class names, normalisation and config (a few KB; 1000 long class names stay under 100 KB).
MAX_PICKLE_BYTES = 16 * 2**20
# A ResNet's state_dict has a few hundred tensors (ResNet18: 122), one record each, plus a few of torch's own.
MAX_RECORDS = 4096
END_OF_DIRECTORY = b"PK\x05\x06"  # the zip's end-of-central-directory record, within its last 64 KiB + 22 bytes
END_RECORD_SEARCH = 65_557
# Records of torch's own beside data.pkl and the tensors (version, byteorder, .data/serialization_id: bytes each).
RECORD_SLACK_BYTES = 64 * 2**10


def load_model_file(path: Path) -> dict:
    """A models/<strategy>.pt checkpoint whose every part was checked, or a UserError naming the file."""
    shown = printable(path)
    try:
        record_bytes = _check_archive(path)
        # Memory-mapped: the tensors' bytes stay in the file until the checks below have bounded them.
        with warnings.catch_warnings():  # torch warns on sparse and quantized tensors: the check below refuses them
            warnings.simplefilter("ignore")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except FileNotFoundError:
        raise UserError(f"{shown}: no such model file") from None
    except _Invalid as error:
        raise UserError(f"{shown}: not a usable model file of this project: {error}") from None
    except Exception as error:  # pickle, zip and torch errors alike: not a file we wrote
        raise UserError(f"{shown}: not a model file of this project ({type(error).__name__})") from None
    try:
        _check_model_file(checkpoint, record_bytes)
    except _Invalid as error:
        raise UserError(f"{shown}: not a usable model file of this project: {error}") from None
    # Copied out of the mapping: a file truncated under a mapped tensor would crash the process (SIGBUS) on access.
    checkpoint["state_dict"] = {key: value.clone() for key, value in checkpoint["state_dict"].items()}
    # Model files written before the stored size was recorded all trained on CIFAR's 32 px images.
    checkpoint["normalization"].setdefault("stored_size", CIFAR_STORED_SIZE)
    return checkpoint


class _Invalid(Exception):
    """One part of a model file is missing or out of range."""


def _check_archive(path: Path) -> int:
    """The bytes its records hold, once its zip directory has bounded what loading costs; FileNotFoundError if missing.

    Uncompressed records take in memory (or in a mapping) what they take in the file.
    """
    try:
        # O_NONBLOCK: a FIFO opens at once (and fails the regular-file check) instead of waiting for a writer.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except OSError as error:
        raise _Invalid(f"cannot open it ({error.strerror})") from None
    with open(descriptor, "rb") as file:
        _require(stat.S_ISREG(os.fstat(file.fileno()).st_mode), "it is not a regular file")
        _require(_record_count(file) <= MAX_RECORDS, f"its zip directory lists more than {MAX_RECORDS} records")
        try:
            records = zipfile.ZipFile(file).infolist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
            raise _Invalid(f"not a zip archive as torch.save writes ({type(error).__name__})") from None
    compressed = [record.filename for record in records if record.compress_type != zipfile.ZIP_STORED]
    if compressed:
        raise _Invalid(
            f"record {printable(compressed[0])!r} is compressed; torch.save stores every record uncompressed, "
            "and a compressed one may expand to any size"
        )
    pickles = [record for record in records if record.filename.endswith("data.pkl")]
    _require(len(pickles) == 1, f"it holds {len(pickles)} data.pkl records, expected 1")
    _require(
        pickles[0].file_size <= MAX_PICKLE_BYTES,
        f"its data.pkl is {pickles[0].file_size} bytes, more than the {MAX_PICKLE_BYTES} a model file's needs",
    )
    return sum(record.file_size for record in records)


def _record_count(file) -> int:
    """The record count of the zip's end record, read before zipfile builds an object per record; 0 if absent."""
    size = os.fstat(file.fileno()).st_size
    file.seek(max(0, size - END_RECORD_SEARCH))
    tail = file.read()
    start = tail.rfind(END_OF_DIRECTORY)
    if start < 0 or len(tail) < start + 22:
        return 0  # zipfile then says it is not a zip archive
    # Its fields: signature, disk numbers (2), entries on this disk, entries in all, directory size and offset.
    return struct.unpack("<4s4H2LH", tail[start : start + 22])[4]


def _check_model_file(checkpoint: object, record_bytes: int) -> None:
    """Types and ranges of every part, then the weights' shapes against the network the config describes."""
    _require(isinstance(checkpoint, Mapping), f"holds a {type(checkpoint).__name__}, not a mapping")
    missing = [key for key in MODEL_KEYS if key not in checkpoint]
    _require(not missing, f"missing {', '.join(missing)}")
    names = checkpoint["class_names"]
    _require(isinstance(names, (list, tuple)) and names, "class_names is not a non-empty list")
    _require(all(isinstance(name, str) for name in names), "class_names holds a non-string")
    _check_normalization(checkpoint["normalization"])
    _check_config(checkpoint["config"])
    _check_weights(checkpoint, record_bytes)


def _listed(keys: list[str]) -> str:
    """The first key, and how many more: one line however many there are."""
    return repr(keys[0]) + (f" and {len(keys) - 1} more" if len(keys) > 1 else "")


def _require(condition: bool, problem: str) -> None:
    if not condition:
        raise _Invalid(problem)


def _check_normalization(normalization: object) -> None:
    _require(isinstance(normalization, Mapping), "normalization is not a mapping")
    missing = [key for key in ("image_size", "mean", "std") if key not in normalization]
    _require(not missing, f"normalization lacks {', '.join(missing)}")
    size = normalization["image_size"]
    _require(
        type(size) is int and MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE,
        f"normalization.image_size = {size!r}, expected an integer from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}"
        " (what training allows)",
    )
    stored = normalization.get("stored_size", CIFAR_STORED_SIZE)
    _require(
        type(stored) is int and MIN_STORED_SIZE <= stored <= size,
        f"normalization.stored_size = {stored!r}, expected an integer from {MIN_STORED_SIZE} to image_size = {size}",
    )
    for key in ("mean", "std"):
        values = normalization[key]
        _require(
            isinstance(values, (list, tuple))
            and len(values) == CHANNELS
            and all(isinstance(value, (int, float)) and math.isfinite(value) for value in values),
            f"normalization.{key} is not {CHANNELS} finite numbers",
        )
    _require(all(value > 0 for value in normalization["std"]), "normalization.std holds a value <= 0")


def _check_config(config: object) -> None:
    _require(isinstance(config, Mapping), "config is not a mapping")
    strategy, model = config.get("strategy"), config.get("model")
    _require(isinstance(strategy, Mapping), "config.strategy is not a mapping")
    _require(strategy.get("stem", STEMS[0]) in STEMS, f"config.strategy.stem is not one of {', '.join(STEMS)}")
    _require(
        isinstance(model, Mapping) and isinstance(model.get("head"), Mapping), "config.model.head is not a mapping"
    )
    arch = model.get("arch", DEFAULT_ARCH)
    _require(arch in ARCHITECTURES, f"config.model.arch is {arch!r}, not one of {', '.join(ARCHITECTURES)}")
    head = model["head"]
    _require(
        sorted(head) == sorted(HEAD_KEYS), f"config.model.head has keys {sorted(head)}, expected {list(HEAD_KEYS)}"
    )
    _require(type(head["hidden_size"]) is int and head["hidden_size"] >= 0, "config.model.head.hidden_size is not >= 0")
    dropout = head["dropout"]
    _require(isinstance(dropout, (int, float)) and 0 <= dropout < 1, "config.model.head.dropout is not in [0, 1)")


def _check_weights(checkpoint: Mapping, record_bytes: int) -> None:
    """Every tensor the described network needs, of its dtype and shape, and nothing else; described on meta."""
    state = checkpoint["state_dict"]
    _require(isinstance(state, Mapping), "state_dict is not a mapping")
    with torch.device("meta"):  # shapes only: a huge head described here costs no memory
        described = inference_architecture(checkpoint).state_dict()
    expected = {key: tuple(value.shape) for key, value in described.items()}
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        raise _Invalid(
            f"state_dict lacks {_listed(missing)}" if missing else f"state_dict has unexpected {_listed(unexpected)}"
        )
    for key, shape in expected.items():
        value = state[key]
        _require(isinstance(value, torch.Tensor), f"state_dict {key} is not a tensor")
        _require(
            tuple(value.shape) == shape,
            f"state_dict {key} has shape {tuple(value.shape)}, expected {shape}"
            + (f" (for {len(checkpoint['class_names'])} class names)" if key.startswith("fc.") else ""),
        )
        _check_tensor(key, value, described[key].dtype)
    weight_bytes = sum(value.numel() * value.element_size() for value in described.values())
    _require(
        record_bytes <= weight_bytes + MAX_PICKLE_BYTES + RECORD_SLACK_BYTES,
        f"its records hold {record_bytes} bytes, more than its weights ({weight_bytes} bytes) and a description",
    )


def _check_tensor(key: str, value: torch.Tensor, dtype: torch.dtype) -> None:
    """A dense CPU tensor of dtype owning no storage beyond its elements, and finite if floating point."""
    kind = "quantized" if value.is_quantized else None if value.layout == torch.strided else str(value.layout)
    _require(kind is None, f"state_dict {key} is a {kind} tensor, not a dense one")
    _require(value.device.type == "cpu", f"state_dict {key} is on the {value.device.type} device, holding no values")
    _require(value.dtype == dtype, f"state_dict {key} is {value.dtype}, expected {dtype}")
    _require(
        value.untyped_storage().nbytes() == value.numel() * value.element_size(),
        f"state_dict {key} is a view of a larger storage ({value.untyped_storage().nbytes()} bytes)",
    )
    _require(
        not value.is_floating_point() or bool(torch.isfinite(value).all()),
        f"state_dict {key} holds NaN or infinite values",
    )
