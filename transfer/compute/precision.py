"""compute.precision: auto on a CPU with bf16 instructions: measure once which precision trains faster here.

Having bf16 instructions does not make bf16 faster: on an AMD EPYC (AVX512-BF16) a ResNet18 step
ran about 1.3x faster in bf16, on an Intel Xeon with AMX about 1.2x slower (1.6x for deep). So the
first run on a machine times a few training steps of ResNet18 at 32 px in each precision and keeps
the answer in a small JSON file outside the project (never a DVC output). bf16 is chosen only when
it is at least BF16_MARGIN faster, so a near-tie always resolves to fp32; afterwards the same
machine, torch version and thread count always read the same choice. Delete the file to measure
again. The chosen precision is recorded in every result's provenance and timing.
"""

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.models import resnet18

from transfer.atomic import write_json

BF16_MARGIN = 1.10  # bf16's throughput must exceed fp32's by 10% to be chosen: ties stay fp32
PROBE_BATCH = 128  # images per timed step: the default strategy.batch_size
PROBE_STEPS = 6  # timed steps per repeat
PROBE_REPEATS = 3  # interleaved repeats per precision; the fastest counts
PROBE_WARMUP_STEPS = 3  # untimed steps per precision first (oneDNN builds its bf16 kernels on first use)
NUM_CLASSES = 100

Probe = Callable[[torch.dtype | None, bool], float]  # (autocast dtype, channels_last) -> images/s


def cache_path() -> Path:
    """Where the measured choices live: $XDG_CACHE_HOME (or ~/.cache)/cifar100-resnet18/precision.json."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "cifar100-resnet18" / "precision.json"


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name from /proc/cpuinfo, else what platform reports."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_key(channels_last: bool) -> str:
    """What a measured choice holds for: CPU model, torch version, threads, memory layout."""
    layout = "channels_last" if channels_last else "contiguous"
    return f"{cpu_model()} | torch {torch.__version__} | {torch.get_num_threads()} threads | {layout}"


def time_training_steps(amp_dtype: torch.dtype | None, channels_last: bool) -> float:
    """Images/s of the fastest of PROBE_REPEATS runs of PROBE_STEPS ResNet18 training steps on the CPU."""
    generator = torch.Generator().manual_seed(0)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    net = resnet18(num_classes=NUM_CLASSES).to(memory_format=memory_format)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    images = torch.randn(PROBE_BATCH, 3, 32, 32, generator=generator).contiguous(memory_format=memory_format)
    labels = torch.randint(0, NUM_CLASSES, (PROBE_BATCH,), generator=generator)
    autocast = torch.autocast("cpu", dtype=amp_dtype, enabled=amp_dtype is not None)

    def step() -> None:
        """One forward, backward and optimizer step."""
        with autocast:
            loss = F.cross_entropy(net(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(PROBE_WARMUP_STEPS):
        step()
    started = time.perf_counter()
    for _ in range(PROBE_STEPS):
        step()
    return PROBE_STEPS * PROBE_BATCH / (time.perf_counter() - started)


def measure(channels_last: bool, probe: Probe = time_training_steps) -> dict:
    """Best throughput of fp32 and bf16, interleaved so that outside load hits both alike, and the choice."""
    best = {"fp32": 0.0, "bf16": 0.0}
    for _ in range(PROBE_REPEATS):
        best["fp32"] = max(best["fp32"], probe(None, channels_last))
        best["bf16"] = max(best["bf16"], probe(torch.bfloat16, channels_last))
    choice = "bf16" if best["bf16"] >= BF16_MARGIN * best["fp32"] else "fp32"
    return {
        "precision": choice,
        "fp32_images_per_second": round(best["fp32"], 1),
        "bf16_images_per_second": round(best["bf16"], 1),
    }


def cpu_precision(channels_last: bool, path: Path | None = None, probe: Probe = time_training_steps) -> str:
    """'bf16' or 'fp32' for this CPU: the stored choice, or (first time) a measured one, then stored."""
    path = path or cache_path()
    key = machine_key(channels_last)
    try:
        choices = json.loads(path.read_text())
    except (OSError, ValueError):  # none yet, or unreadable: measure again
        choices = {}
    if not isinstance(choices, dict):
        choices = {}
    if key not in choices or choices[key].get("precision") not in ("fp32", "bf16"):
        print(f"compute.precision auto: timing fp32 and bf16 training steps once on {key} ...", flush=True)
        choices[key] = measure(channels_last, probe)
        print(f"compute.precision auto: {choices[key]} (kept in {path})", flush=True)
        try:
            write_json(path, choices)
        except OSError:  # a read-only home: the choice holds for this run only
            pass
    return choices[key]["precision"]
