"""Read a models/<strategy>.pt file and check all of it before any network is built.

A model file may come from anyone (a colleague, `dvc artifacts get`), so every value that decides an
allocation or a shape is checked first: torch.load with weights_only=True runs no code, but a head of
hidden_size 10**9 or an image_size of 40000 would still ask for gigabytes, and a wrong class count
would end in a traceback deep inside load_state_dict.
"""

import dataclasses
import math
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

MODEL_KEYS = ("state_dict", "class_names", "normalization", "config")  # of a models/<strategy>.pt file
HEAD_KEYS = tuple(field.name for field in dataclasses.fields(HeadConfig))
CHANNELS = 3  # mean and std hold one value per RGB channel


def load_model_file(path: Path) -> dict:
    """A models/<strategy>.pt checkpoint whose every part was checked, or a UserError naming the file."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: no such model file") from None
    except Exception as error:  # pickle, zip and torch errors alike: not a file we wrote
        raise UserError(f"{path}: not a model file of this project ({type(error).__name__})") from None
    try:
        _check_model_file(checkpoint)
    except _Invalid as error:
        raise UserError(f"{path}: not a usable model file of this project: {error}") from None
    # Model files written before the stored size was recorded all trained on CIFAR's 32 px images.
    checkpoint["normalization"].setdefault("stored_size", CIFAR_STORED_SIZE)
    return checkpoint


class _Invalid(Exception):
    """One part of a model file is missing or out of range."""


def _check_model_file(checkpoint: object) -> None:
    """Types and ranges of every part, then the weights' shapes against the network the config describes."""
    _require(isinstance(checkpoint, Mapping), f"holds a {type(checkpoint).__name__}, not a mapping")
    missing = [key for key in MODEL_KEYS if key not in checkpoint]
    _require(not missing, f"missing {', '.join(missing)}")
    names = checkpoint["class_names"]
    _require(isinstance(names, (list, tuple)) and names, "class_names is not a non-empty list")
    _require(all(isinstance(name, str) for name in names), "class_names holds a non-string")
    _check_normalization(checkpoint["normalization"])
    _check_config(checkpoint["config"])
    _check_weights(checkpoint)


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


def _check_weights(checkpoint: Mapping) -> None:
    """Every tensor the described network needs, of its shape, and nothing else; checked on the meta device."""
    state = checkpoint["state_dict"]
    _require(isinstance(state, Mapping), "state_dict is not a mapping")
    with torch.device("meta"):  # shapes only: a huge head described here costs no memory
        expected = {key: tuple(value.shape) for key, value in inference_architecture(checkpoint).state_dict().items()}
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
