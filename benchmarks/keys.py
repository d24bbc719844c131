"""What names a contender: a typed key (its kind, strategy, precision mode, loader workers), never a display string."""

from dataclasses import dataclass
from enum import Enum, auto

import torch

from transfer.compute.device import Compute

SCRATCH, SHALLOW, DEEP = "scratch", "shallow", "deep"  # strategies of params.yaml that the epochs use
DTYPE_NAMES = {None: "fp32", torch.bfloat16: "bf16"}  # autocast dtype -> how the table names it


class Kind(Enum):
    """What a contender times."""

    BARE = auto()  # forward, loss, backward, step on pre-made device tensors
    LOADER = auto()  # the bare step fed by the usual notebook input pipeline
    EPOCH = auto()  # the project's epoch over augmented images
    DATA_PATH = auto()  # ImageBatches.inputs alone
    FEATURE_CACHE = auto()  # training_batches caching the frozen features
    CACHED_EPOCH = auto()  # a shallow epoch on the cached features


@dataclass(frozen=True)
class PrecisionMode:
    """An autocast dtype (None: fp32) and a memory layout."""

    amp_dtype: torch.dtype | None
    channels_last: bool

    @classmethod
    def of(cls, compute: Compute) -> "PrecisionMode":
        """The mode compute runs in."""
        return cls(compute.amp_dtype, compute.channels_last)

    @property
    def name(self) -> str:
        """E.g. 'bf16 channels_last'."""
        dtype = DTYPE_NAMES[self.amp_dtype]
        return f"{dtype} channels_last" if self.channels_last else dtype

    def on(self, device: torch.device) -> Compute:
        """A Compute on device in this mode."""
        return Compute(device, self.amp_dtype, self.channels_last)


# Timed for scratch and deep, in this order: fp32 and bf16, each without and with channels_last.
PRECISION_MODES = tuple(
    PrecisionMode(dtype, channels_last) for dtype in (None, torch.bfloat16) for channels_last in (False, True)
)


@dataclass(frozen=True)
class ContenderKey:
    """One contender: its kind and, where the kind needs them, what it trains, in which mode, with how many workers."""

    kind: Kind
    strategy: str | None = None  # EPOCH: the params.yaml strategy it trains
    mode: PrecisionMode | None = None  # EPOCH: a fixed precision mode; None: the bench's compute
    workers: int | None = None  # LOADER: DataLoader num_workers


BARE = ContenderKey(Kind.BARE)
SCRATCH_EPOCH = ContenderKey(Kind.EPOCH, SCRATCH)
SHALLOW_EPOCH = ContenderKey(Kind.EPOCH, SHALLOW)
DATA_PATH = ContenderKey(Kind.DATA_PATH)
FEATURE_CACHE = ContenderKey(Kind.FEATURE_CACHE)
CACHED_EPOCH = ContenderKey(Kind.CACHED_EPOCH)


def precision_epoch(strategy: str, mode: PrecisionMode) -> ContenderKey:
    """The epoch of strategy in a fixed precision mode."""
    return ContenderKey(Kind.EPOCH, strategy, mode)


def loader(workers: int) -> ContenderKey:
    """The bare step fed by a DataLoader with workers processes."""
    return ContenderKey(Kind.LOADER, workers=workers)
