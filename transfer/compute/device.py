"""Device, precision and memory layout as values, resolved once from compute.* params."""

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from transfer.compute.precision import cpu_precision
from transfer.config import ComputeConfig
from transfer.errors import UserError

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of CPUs with native bf16 math


@dataclass(frozen=True)
class Compute:
    """Where and how tensors are computed."""

    device: torch.device
    amp_dtype: torch.dtype | None  # autocast dtype; None runs in fp32
    channels_last: bool

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision around a forward pass (a no-op in fp32)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    @property
    def memory_format(self) -> torch.memory_format:
        """Layout for 4-D activations and conv weights."""
        return torch.channels_last if self.channels_last else torch.contiguous_format

    @property
    def precision(self) -> str:
        """The precision actually used: 'fp32' or the autocast dtype ('bf16'), whatever compute.precision said."""
        return "fp32" if self.amp_dtype is None else str(self.amp_dtype).removeprefix("torch.").replace("bfloat", "bf")

    def describe(self) -> str:
        """E.g. 'cpu, bfloat16, channels_last'."""
        precision = "fp32" if self.amp_dtype is None else str(self.amp_dtype).removeprefix("torch.")
        return ", ".join([str(self.device), precision] + (["channels_last"] if self.channels_last else []))

    def record(self) -> dict:
        """What computed a result, as it resolved on this machine (compute.* 'auto' settled): results record it.

        The device type, not its index: every rank of a multi-GPU run must record, and key, the same.
        """
        return {"device": self.device.type, "precision": self.precision, "channels_last": self.channels_last}


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> cuda, then mps, then cpu; an explicit name must be available here. GPU local_rank on CUDA."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if cuda else "mps" if mps else "cpu"
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise UserError(f"compute.device = {name!r} is not available on this machine; use auto or cpu")
    return torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True on CPUs whose flags show bf16 instructions (AVX512-BF16 or AMX); False when unknown."""
    try:
        flags = cpuinfo.read_text().split()
    except OSError:
        return False
    return any(flag in flags for flag in CPU_BF16_FLAGS)


def resolve_precision(name: str, device: torch.device, channels_last: bool = False) -> torch.dtype | None:
    """compute.precision -> autocast dtype; 'auto' picks bf16 only where it is fast.

    auto: bf16 on CUDA where supported; on a CPU with bf16 instructions whichever of bf16 and fp32
    measured faster on this machine (transfer/compute/precision.py: measured once, then read back); else fp32.
    """
    if name == "fp32":
        return None
    if name == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16 if cpu_precision(channels_last) == "bf16" else None
    return None  # CPUs without bf16 instructions emulate it slowly; mps: autocast support varies by macOS


def make_deterministic() -> None:
    """Deterministic kernels wherever PyTorch has them, so a rerun gives the same bytes.

    On the CPU every op this project uses is deterministic. On CUDA, cuBLAS needs a fixed workspace
    (set before CUDA starts) and cuDNN must not pick algorithms by timing; ops without a
    deterministic CUDA kernel warn instead of failing (warn_only).
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)


def resolve_compute(compute: ComputeConfig, local_rank: int = 0) -> Compute:
    """The Compute that compute.* params name on this machine, for the process with this local rank."""
    device = resolve_device(compute.device, local_rank)
    amp_dtype = resolve_precision(compute.precision, device, compute.channels_last)
    return Compute(device=device, amp_dtype=amp_dtype, channels_last=compute.channels_last)


TRAINING_MEMORY_ADVICE = "lower strategy.batch_size (training) or compute.eval_batch_size (evaluation)"


@contextlib.contextmanager
def out_of_memory_as_user_error(label: str, advice: str = TRAINING_MEMORY_ADVICE) -> Iterator[None]:
    """A CUDA out-of-memory error inside the block becomes one line saying which setting lowers memory use."""
    try:
        yield
    except torch.OutOfMemoryError as error:
        first_line = str(error).splitlines()[0] if str(error) else "out of memory"
        raise UserError(f"{label}: the GPU ran out of memory ({first_line}); {advice}") from None
