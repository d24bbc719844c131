"""Throughput of the project's training path against bare PyTorch and a torchvision DataLoader, in one run.

Run from the project root:
    .venv/bin/python -m benchmarks.throughput  # defaults: 2048 images, params.yaml compute and batch size
    .venv/bin/python -m benchmarks.throughput --skip-rss --images 1024 --workers 0 2 --device cpu

Every contender runs in this process, one after another, on the same synthetic uint8 images (and labels)
generated in memory, through the project's own code (stages.*) with the compute section of params.yaml
(device, precision, channels_last). Each is built and warmed up (2 steps) once, then timed --repeats
times, the repeats interleaved with the other contenders' so that load from other processes hits all
alike; the fastest repeat counts (the least disturbed one). The project's contenders run with the
process-wide settings the train stage applies (stages.device.make_deterministic); the baselines without
them, as a plain script would. compute.compile is not applied.

The ratios (keys of the JSON object printed as the last line; target in brackets):
  train_step_vs_bare               images/s of train_one_epoch for scratch (augmentation, model, optimizer,
                                   TopKAccuracy) / a bare PyTorch loop: torchvision resnet18 with a 100-class fc,
                                   same batch size, autocast dtype and memory format, on pre-made normalised
                                   device tensors (forward, cross_entropy, zero_grad, backward, SGD step) [>= 0.95]
  data_vs_model                    images/s of the data path alone (ImageBatches.inputs with augmentation: index,
                                   crop, flip, normalise, layout) / images/s of the bare loop [>= 20]
  shallow_vs_scratch_epoch         seconds of a shallow epoch with augmentation (frozen backbone forward without
                                   autograd, then the head) / seconds of a scratch epoch [<= 0.30]
  cached_shallow_vs_scratch_epoch  a shallow epoch without augmentation, where training_batches caches the frozen
                                   features once: (cache seconds + epochs * cached epoch seconds) / epochs, with
                                   epochs = params strategy.epochs, / seconds of a scratch epoch [<= 0.03]
  pipeline_vs_torchvision_loader   images/s of the scratch epoch / the bare step fed by the usual notebook input
                                   pipeline (a Dataset of PIL images, RandomCrop, RandomHorizontalFlip, ToTensor,
                                   Normalize, through DataLoader(shuffle=True)); best of --workers [>= 1.5]
  bf16_vs_fp32                     images/s of a scratch epoch in bf16 / in fp32, both in params' channels_last [info]
  deep_vs_scratch_epoch            seconds of a deep epoch with augmentation / a scratch epoch, both in the precision
                                   that compute.precision auto chooses here [<= 0.8]
  auto_vs_best_precision           for scratch and for deep, images/s in the precision auto chooses here / the best of
                                   fp32 and bf16, each with and without channels_last; the lower of the two [>= 0.95]
  peak_rss_mb                      peak resident memory of `python -m stages.train <--rss-strategy>`, 1 epoch, in a
                                   temporary copy of the project with synthetic data at the default sizes [<= 3000]
"""

import argparse
import dataclasses
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from torchvision.models import resnet18

from stages.batches import FeatureBatches, ImageBatches, cache_features, training_batches
from stages.cifar_archive import NUM_CLASSES
from stages.config import DEVICES, PRECISIONS, Params, StrategyConfig, load_params
from stages.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageSplit,
    PreparedData,
    epoch_generator,
    normalize,
    shuffled_batches,
)
from stages.device import Compute, make_deterministic, resolve_compute
from stages.errors import run_stage
from stages.model import build_network
from stages.paths import PARAMS_PATH, PROJECT_ROOT
from stages.train import build_optimizer, train_one_epoch
from stages.weights import write_random_weights

DEFAULT_IMAGES = 2048  # images per timed epoch: 16 steps of 128, about 2 s of scratch training on 2 CPU cores
DEFAULT_REPEATS = 3  # timed repeats per contender; the fastest counts
DEFAULT_WORKERS = (0, 1, 2)  # DataLoader num_workers tried for the torchvision baseline
DEFAULT_RSS_STRATEGY = (
    "scratch"  # the heaviest stage; about 1 min for its one epoch on 2 idle CPU cores ("shallow": ~20 s)
)
WARMUP_STEPS = 2  # untimed steps before each contender's first timed epoch
RSS_EPOCHS = 1  # epochs of the train stage whose peak memory is measured
SCRATCH, SHALLOW, DEEP = "scratch", "shallow", "deep"  # strategies of params.yaml that the epochs use
LOG_TAIL_CHARS = 2000  # of a failed stage's output, shown in the error
DECIMALS = 3  # of every float in the table and the JSON line
# Runs argv[2:] with its output in the file argv[1] and prints "<its ru_maxrss> <its exit code>". A child
# inherits the peak RSS of the process it was forked from (Linux keeps the old memory's high-water mark
# across exec), so the stage must be started by this small fresh process, not by this benchmark's big one.
RSS_LAUNCHER = """
import os, subprocess, sys
with open(sys.argv[1], "w") as log:
    child = subprocess.Popen(sys.argv[2:], stdout=log, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(child.pid, 0)
print(usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""

# name: (comparison, target); the JSON keys, in order
TARGETS = {
    "train_step_vs_bare": (">=", 0.95),
    "data_vs_model": (">=", 20.0),
    "shallow_vs_scratch_epoch": ("<=", 0.30),
    "cached_shallow_vs_scratch_epoch": ("<=", 0.03),
    "pipeline_vs_torchvision_loader": (">=", 1.5),
    "deep_vs_scratch_epoch": ("<=", 0.8),
    "auto_vs_best_precision": (">=", 0.95),
    "peak_rss_mb": ("<=", 3000.0),
}
# Precision modes timed for scratch and deep: (autocast dtype, channels_last).
PRECISION_MODES = {
    "fp32": (None, False),
    "fp32 channels_last": (None, True),
    "bf16": (torch.bfloat16, False),
    "bf16 channels_last": (torch.bfloat16, True),
}


@dataclass(frozen=True)
class Bench:
    """What every contender shares: the config, where it computes, and the same synthetic images."""

    params: Params
    compute: Compute
    batch_size: int
    images: np.ndarray  # (N, 32, 32, 3) uint8, HWC as the prepare stage writes them
    labels: np.ndarray  # (N,) int64 in [0, NUM_CLASSES)
    split: ImageSplit  # the same images on the device, (N, 3, 32, 32) uint8
    pretrained_path: Path  # seeded random ResNet18 weights, the stand-in for ImageNet

    @property
    def seed(self) -> int:
        """The first training seed of params.yaml: every contender draws from it."""
        return self.params.strategy.seeds[0]


@dataclass(frozen=True)
class Timing:
    """Images one run of a contender processes, and the seconds of each timed repeat."""

    images: int
    seconds: list[float]

    @property
    def best(self) -> float:
        """Seconds of the fastest repeat."""
        return min(self.seconds)

    @property
    def images_per_second(self) -> float:
        """Throughput of the fastest repeat."""
        return self.images / self.best


Contender = Callable[[], int]  # runs one timed pass, returns the images it processed


# ---------------------------------------------------------------------------------------------
# Set-up


def synthetic_data(num_images: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images (N, 32, 32, 3) and labels (N,), seeded."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(num_images, 32, 32, 3), dtype=np.uint8)
    return images, rng.integers(0, NUM_CLASSES, size=num_images, dtype=np.int64)


def device_split(images: np.ndarray, labels: np.ndarray, device: torch.device) -> ImageSplit:
    """The images as the train stage holds them on the device, through PreparedData.split."""
    empty_images, empty_labels = images[:0], labels[:0]
    class_names = tuple(map(str, range(NUM_CLASSES)))
    superclasses = np.arange(NUM_CLASSES) // 5  # unused: the benchmark only trains
    superclass_names = tuple(map(str, range(NUM_CLASSES // 5)))
    prepared = PreparedData(
        images,
        labels,
        empty_images,
        empty_labels,
        empty_images,
        empty_labels,
        class_names,
        superclasses,
        superclass_names,
    )
    return prepared.split("train", device)


def make_bench(args: argparse.Namespace, params: Params, pretrained_path: Path) -> Bench:
    """Resolve compute with the command line's overrides and put the synthetic images on the device."""
    compute_config = dataclasses.replace(params.compute, device=args.device, precision=args.precision)
    compute = resolve_compute(compute_config)
    images, labels = synthetic_data(args.images, params.strategy.seeds[0])
    write_random_weights(pretrained_path, params.model.random_weights_seed)
    return Bench(
        params, compute, args.batch_size, images, labels, device_split(images, labels, compute.device), pretrained_path
    )


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so that wall time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed(contender: Contender, device: torch.device) -> tuple[int, float]:
    """(images, seconds) of one run of contender, device work included."""
    synchronize(device)
    started = time.perf_counter()
    images = contender()
    synchronize(device)
    return images, time.perf_counter() - started


# ---------------------------------------------------------------------------------------------
# The bare PyTorch loop, and the torchvision DataLoader baseline feeding it


def bare_network(bench: Bench) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """Plain torchvision resnet18 with a 100-class fc and SGD with the project's hyperparameters."""
    torch.manual_seed(bench.seed)
    model = resnet18(weights=None, num_classes=NUM_CLASSES).to(
        bench.compute.device, memory_format=bench.compute.memory_format
    )
    training = bench.params.strategy_named(SCRATCH).training
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=training.lr,
        momentum=training.momentum,
        weight_decay=training.weight_decay,
        nesterov=training.momentum > 0,
    )
    return model.train(), optimizer


def bare_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    amp_dtype: torch.dtype | None,
) -> None:
    """Forward, cross_entropy, zero_grad, backward, step; nothing else."""
    with torch.autocast(inputs.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        loss = F.cross_entropy(model(inputs), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def premade_batches(bench: Bench) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every full batch normalised ahead of time, on the device, in the compute's memory format."""
    split, size, image_size = bench.split, bench.batch_size, bench.params.data.image_size
    starts = range(0, len(split) - size + 1, size)
    return [
        (
            normalize(split.images[start : start + size], image_size).contiguous(
                memory_format=bench.compute.memory_format
            ),
            split.labels[start : start + size],
        )
        for start in starts
    ]


def bare_contender(bench: Bench) -> Contender:
    """The bare loop over pre-made device tensors, warmed up."""
    model, optimizer = bare_network(bench)
    batches = premade_batches(bench)
    for inputs, labels in batches[:WARMUP_STEPS]:
        bare_step(model, optimizer, inputs, labels, bench.compute.amp_dtype)

    def epoch() -> int:
        """Bare steps over every pre-made batch; returns images seen."""
        for inputs, labels in batches:
            bare_step(model, optimizer, inputs, labels, bench.compute.amp_dtype)
        return len(batches) * bench.batch_size

    return epoch


class PilImages(Dataset):
    """The usual notebook Dataset: one HWC uint8 image at a time, as PIL, through torchvision transforms."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable):
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """(3, 32, 32) float, label."""
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def notebook_loader(bench: Bench, workers: int) -> DataLoader:
    """DataLoader over PilImages with the usual CIFAR augmentation; drops the last partial batch like the project."""
    image_size = bench.params.data.image_size
    resize = [transforms.Resize(image_size)] if image_size != 32 else []  # as the project does above 32 px
    transform = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            *resize,
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    return DataLoader(
        PilImages(bench.images, bench.labels, transform),
        batch_size=bench.batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        pin_memory=bench.compute.device.type == "cuda",
        generator=torch.Generator().manual_seed(bench.seed),
    )


def loader_contender(bench: Bench, workers: int) -> Contender:
    """The bare step fed by notebook_loader; each timed epoch starts its workers afresh, as DataLoader does."""
    model, optimizer = bare_network(bench)
    loader = notebook_loader(bench, workers)
    compute = bench.compute

    def feed(batches) -> int:
        """Bare steps over (inputs, labels) batches from the loader; returns images seen."""
        seen = 0
        for inputs, labels in batches:
            inputs = inputs.to(compute.device, non_blocking=True).contiguous(memory_format=compute.memory_format)
            bare_step(model, optimizer, inputs, labels.to(compute.device, non_blocking=True), compute.amp_dtype)
            seen += len(labels)
        return seen

    feed(itertools.islice(loader, WARMUP_STEPS))
    return lambda: feed(loader)


# ---------------------------------------------------------------------------------------------
# The project's own path, with the process-wide settings of the train stage


@contextmanager
def stage_settings() -> Iterator[None]:
    """Deterministic kernels as stages.train.run sets them, for the project's contenders only; restored after."""
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    make_deterministic()
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.benchmark = previous[2]


def in_stage_settings(contender: Contender) -> Contender:
    """contender, run under stage_settings."""

    def run() -> int:
        with stage_settings():
            return contender()

    return run


def subset(batches: ImageBatches, num_images: int) -> ImageBatches:
    """The first num_images of batches, same settings (for warm-up)."""
    split = ImageSplit(batches.split.images[:num_images], batches.split.labels[:num_images])
    return ImageBatches(split, batches.image_size, batches.augment_config, batches.compute)


def strategy_net(bench: Bench, strategy: StrategyConfig, compute: Compute | None = None) -> torch.nn.Module:
    """The strategy's StrategyNet on the device, as stages.train builds it (in compute's layout, else the bench's)."""
    compute = compute or bench.compute
    net = build_network(strategy, bench.params.model.head, NUM_CLASSES, bench.pretrained_path, bench.seed)
    return net.to(compute.device, memory_format=compute.memory_format)


def epoch_contender(bench: Bench, strategy_name: str, compute: Compute | None = None) -> Contender:
    """train_one_epoch for the strategy over augmented ImageBatches, warmed up (in compute, else the bench's)."""
    compute = compute or bench.compute
    strategy = bench.params.strategy_named(strategy_name)
    net = strategy_net(bench, strategy, compute)
    optimizer = build_optimizer(net, strategy.training)
    batches = ImageBatches(bench.split, bench.params.data.image_size, bench.params.data.augment, compute)

    def run(source: ImageBatches, epoch: int) -> int:
        """One train_one_epoch over source; returns images seen."""
        generator = epoch_generator(bench.seed, epoch, compute.device)
        return train_one_epoch(
            net,
            optimizer,
            source,
            bench.batch_size,
            generator,
            compute,
            NUM_CLASSES,
            f"benchmark {strategy_name}",
        )[2]

    run(subset(batches, WARMUP_STEPS * bench.batch_size), epoch=0)
    return lambda: run(batches, epoch=1)


def data_path_contender(bench: Bench) -> Contender:
    """ImageBatches.inputs with augmentation over one epoch's shuffled batches, nothing else."""
    batches = ImageBatches(bench.split, bench.params.data.image_size, bench.params.data.augment, bench.compute)
    device = bench.compute.device

    def epoch() -> int:
        """Network inputs of one epoch's shuffled, augmented batches; returns images made."""
        generator = epoch_generator(bench.seed, 1, device)
        indices_list = shuffled_batches(len(batches), bench.batch_size, generator)
        for indices in indices_list:
            batches.inputs(indices, generator)
        return sum(len(indices) for indices in indices_list)

    warmup_generator = epoch_generator(bench.seed, 0, device)
    for indices in shuffled_batches(len(batches), bench.batch_size, warmup_generator)[:WARMUP_STEPS]:
        batches.inputs(indices, warmup_generator)
    return epoch


def cached_shallow_contenders(bench: Bench) -> tuple[Contender, Contender]:
    """(feature caching via training_batches, one shallow epoch on the cached features), both warmed up."""
    strategy = dataclasses.replace(bench.params.strategy_named(SHALLOW), augment=False)
    net = strategy_net(bench, strategy)
    optimizer = build_optimizer(net, strategy.training)
    images = ImageBatches(bench.split, bench.params.data.image_size, None, bench.compute)
    cache_batch_size = bench.params.compute.eval_batch_size  # what stages.train.fit passes
    cache_features(net, subset(images, WARMUP_STEPS * cache_batch_size), cache_batch_size)
    features = training_batches(net, images, strategy.augment, cache_batch_size)
    assert isinstance(features, FeatureBatches), "shallow without augmentation should train on cached features"

    def cache() -> int:
        """Cache every image's frozen features afresh; returns images cached."""
        return len(training_batches(net, images, strategy.augment, cache_batch_size))

    def epoch() -> int:
        """One shallow epoch on the cached features; returns images seen."""
        generator = epoch_generator(bench.seed, 1, bench.compute.device)
        return train_one_epoch(
            net,
            optimizer,
            features,
            bench.batch_size,
            generator,
            bench.compute,
            NUM_CLASSES,
            "benchmark shallow, cached",
        )[2]

    epoch()  # warm-up: the optimizer's state and the head's kernels
    return cache, epoch


def measure(contenders: dict[str, Contender], repeats: int, device: torch.device) -> dict[str, Timing]:
    """Time every contender repeats times, interleaved (round-robin) so that outside load hits all alike."""
    images: dict[str, int] = {}
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, contender in contenders.items():
            images[name], elapsed = timed(contender, device)
            seconds[name].append(elapsed)
    return {name: Timing(images[name], seconds[name]) for name in contenders}


# ---------------------------------------------------------------------------------------------
# Peak memory of the real train stage


def write_rss_params(source: Path, destination: Path, device: str) -> None:
    """params.yaml with synthetic data and random weights at the default data sizes, one epoch."""
    tree = yaml.safe_load(source.read_text())
    tree["data"]["source"] = "synthetic"
    tree["model"]["weights"] = "random"
    tree["compute"]["device"] = device
    tree["strategy"]["epochs"] = RSS_EPOCHS
    for entry in tree["strategies"].values():
        entry.pop("epochs", None)  # a per-strategy override would undo the one epoch
    destination.write_text(yaml.safe_dump(tree, sort_keys=False))


def run_command(command: list[str], project: Path) -> None:
    """Run a stage command in project; RuntimeError with its output's tail if it fails."""
    result = subprocess.run(command, cwd=project, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command[1:])} failed ({result.returncode}): {(result.stdout + result.stderr)[-LOG_TAIL_CHARS:]}"
        )


def child_peak_rss_mb(command: list[str], project: Path) -> float:
    """Run command in project through RSS_LAUNCHER and return the command's own peak RSS in MiB."""
    log_path = project / "stage.log"
    launched = subprocess.run(
        [sys.executable, "-c", RSS_LAUNCHER, str(log_path), *command],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    max_rss, exit_code = map(int, launched.stdout.split())
    if exit_code != 0:
        raise RuntimeError(f"{' '.join(command[1:])} failed ({exit_code}): {log_path.read_text()[-LOG_TAIL_CHARS:]}")
    kib = max_rss / 1024 if sys.platform == "darwin" else max_rss  # macOS reports bytes, Linux KiB
    return kib / 1024


def peak_rss_mb(strategy: str, device: str) -> tuple[float, float]:
    """(peak RSS MiB, seconds) of `python -m stages.train strategy` in a temp copy, after download, prepare, weights."""
    with tempfile.TemporaryDirectory(prefix="benchmark-rss-") as temp:
        project = Path(temp)
        shutil.copytree(PROJECT_ROOT / "stages", project / "stages", ignore=shutil.ignore_patterns("__pycache__"))
        write_rss_params(PROJECT_ROOT / PARAMS_PATH, project / PARAMS_PATH, device)
        for stage in ("download", "prepare", "weights"):
            run_command([sys.executable, "-m", f"stages.{stage}"], project)
        started = time.perf_counter()
        peak = child_peak_rss_mb([sys.executable, "-m", "stages.train", strategy], project)
        return peak, time.perf_counter() - started


# ---------------------------------------------------------------------------------------------
# Report


def mode_name(compute: Compute) -> str:
    """The PRECISION_MODES key of compute's autocast dtype and layout."""
    return next(name for name, mode in PRECISION_MODES.items() if mode == (compute.amp_dtype, compute.channels_last))


def precision_contenders(bench: Bench) -> dict[str, Contender]:
    """A warmed-up epoch of scratch and of deep in every precision mode, keyed '<strategy> <mode>'."""
    return {
        f"{strategy} {mode}": epoch_contender(bench, strategy, Compute(bench.compute.device, dtype, channels_last))
        for strategy in (SCRATCH, DEEP)
        for mode, (dtype, channels_last) in PRECISION_MODES.items()
    }


def precision_ratios(timings: dict[str, Timing], bench: Bench, auto: Compute) -> dict[str, float]:
    """bf16_vs_fp32, deep_vs_scratch_epoch and auto_vs_best_precision from the precision contenders."""
    layout = " channels_last" if bench.compute.channels_last else ""
    chosen = mode_name(auto)

    def auto_vs_best(strategy: str) -> float:
        """Throughput of auto's mode / the best mode's, for one strategy."""
        best = max(timings[f"{strategy} {mode}"].images_per_second for mode in PRECISION_MODES)
        return timings[f"{strategy} {chosen}"].images_per_second / best

    return {
        "bf16_vs_fp32": timings[f"{SCRATCH} bf16{layout}"].images_per_second
        / timings[f"{SCRATCH} fp32{layout}"].images_per_second,
        "deep_vs_scratch_epoch": timings[f"{DEEP} {chosen}"].best / timings[f"{SCRATCH} {chosen}"].best,
        "auto_vs_best_precision": min(auto_vs_best(SCRATCH), auto_vs_best(DEEP)),
    }


def ratios(timings: dict[str, Timing], loader_names: list[str], epochs: int) -> dict[str, float]:
    """The five throughput ratios from the contenders' best repeats."""
    scratch = timings[SCRATCH]
    amortised = (timings["cache"].best + epochs * timings["cached epoch"].best) / epochs
    best_loader = max(loader_names, key=lambda name: timings[name].images_per_second)
    return {
        "train_step_vs_bare": scratch.images_per_second / timings["bare"].images_per_second,
        "data_vs_model": timings["data path"].images_per_second / timings["bare"].images_per_second,
        "shallow_vs_scratch_epoch": timings[SHALLOW].best / scratch.best,
        "cached_shallow_vs_scratch_epoch": amortised / scratch.best,
        "pipeline_vs_torchvision_loader": scratch.images_per_second / timings[best_loader].images_per_second,
    }


def verdict(name: str, value: float | None) -> tuple[str, str]:
    """(target text, 'pass'/'FAIL'/'skipped'/'info') for a JSON key, judged on the value as printed (3 decimals)."""
    if name not in TARGETS:
        return "", "info"
    comparison, target = TARGETS[name]
    if value is None:
        return f"{comparison} {target:g}", "skipped"
    shown = round(value, DECIMALS)
    passed = shown >= target if comparison == ">=" else shown <= target
    return f"{comparison} {target:g}", "pass" if passed else "FAIL"


def spread(timing: Timing) -> str:
    """'min-max s over n' of a contender's repeats."""
    return f"{min(timing.seconds):.3f}-{max(timing.seconds):.3f} s over {len(timing.seconds)}"


def measurement_rows(
    timings: dict[str, Timing], loader_names: list[str], epochs: int
) -> list[tuple[str, float, str, str]]:
    """(name, value, unit, note) of every raw measurement."""
    rows = [
        ("bare PyTorch loop (model step alone)", timings["bare"].images_per_second, "img/s", spread(timings["bare"])),
        ("train_one_epoch scratch, augmented", timings[SCRATCH].images_per_second, "img/s", spread(timings[SCRATCH])),
        (
            "data path alone (ImageBatches.inputs)",
            timings["data path"].images_per_second,
            "img/s",
            spread(timings["data path"]),
        ),
        ("scratch epoch", timings[SCRATCH].best, "s", ""),
        ("shallow epoch, augmented", timings[SHALLOW].best, "s", spread(timings[SHALLOW])),
        ("feature caching (training_batches)", timings["cache"].best, "s", spread(timings["cache"])),
        ("shallow epoch on cached features", timings["cached epoch"].best, "s", spread(timings["cached epoch"])),
        (
            "cached shallow, amortised",
            (timings["cache"].best + epochs * timings["cached epoch"].best) / epochs,
            "s",
            f"(cache + {epochs} epochs) / {epochs}",
        ),
    ]
    rows += [
        (f"train_one_epoch {name}", timings[name].images_per_second, "img/s", spread(timings[name]))
        for name in timings
        if name.split(" ")[0] in (SCRATCH, DEEP) and name.split(" ", 1)[-1].split(" ")[0] in ("fp32", "bf16")
    ]
    rows += [
        (
            f"torchvision DataLoader, {name}",
            timings[name].images_per_second,
            "img/s",
            f"{spread(timings[name])}; workers start each epoch",
        )
        for name in loader_names
    ]
    return rows


def print_table(
    rows: list[tuple[str, float, str, str]], results: dict[str, float | None], notes: dict[str, str]
) -> None:
    """Measurements, then each ratio with its target and verdict."""
    print(f"\n{'measurement':<44} {'value':>12}  {'unit':<6} note")
    for name, value, unit, note in rows:
        print(f"{name:<44} {value:>12.{DECIMALS}f}  {unit:<6} {note}")
    print(f"\n{'result':<34} {'value':>10}  {'unit':<6} {'target':<8} {'':<7} note")
    for name, value in results.items():
        target, outcome = verdict(name, value)
        unit = "MiB" if name == "peak_rss_mb" else "ratio"
        shown = "null" if value is None else f"{value:.{DECIMALS}f}"
        print(f"{name:<34} {shown:>10}  {unit:<6} {target:<8} {outcome:<7} {notes.get(name, '')}")


# ---------------------------------------------------------------------------------------------
# Command line


def parse_args(params: Params) -> argparse.Namespace:
    """Flags; defaults from params.yaml."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument(
        "--images", type=int, default=DEFAULT_IMAGES, help=f"images per timed epoch (default {DEFAULT_IMAGES})"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=params.strategy.batch_size,
        help="images per step (default: params strategy.batch_size)",
    )
    parser.add_argument(
        "--device",
        default=params.compute.device,
        choices=DEVICES,
        help="auto, cpu, cuda or mps (default: params compute.device)",
    )
    parser.add_argument(
        "--precision",
        default=params.compute.precision,
        choices=PRECISIONS,
        help="auto, fp32 or bf16 (default: params compute.precision)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=list(DEFAULT_WORKERS),
        help="DataLoader num_workers to try (default 0 1 2)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=DEFAULT_REPEATS,
        help=f"timed repeats per contender, fastest counts (default {DEFAULT_REPEATS})",
    )
    parser.add_argument(
        "--skip-rss", action="store_true", help="skip the peak-memory run of the train stage (peak_rss_mb: null)"
    )
    parser.add_argument(
        "--rss-strategy",
        default=DEFAULT_RSS_STRATEGY,
        help=f"strategy whose train stage is measured (default {DEFAULT_RSS_STRATEGY}; shallow is ~40 s quicker)",
    )
    args = parser.parse_args()
    if args.batch_size < 1 or args.images < args.batch_size or args.repeats < 1 or min(args.workers) < 0:
        parser.error("need --batch-size >= 1, --images >= --batch-size, --repeats >= 1 and --workers >= 0")
    params.strategy_named(args.rss_strategy)  # fail now, not after the timings
    return args


def main() -> None:
    """Run every contender, then the peak-memory stage, and print the table and one JSON line."""
    params = load_params()
    args = parse_args(params)
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    torch.manual_seed(params.strategy.seeds[0])
    with tempfile.TemporaryDirectory(prefix="benchmark-weights-") as temp:
        bench = make_bench(args, params, Path(temp) / "resnet18.pth")
        print(
            f"benchmark: {args.images} images, batch {bench.batch_size}, on {bench.compute.describe()}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads",
            flush=True,
        )
        loader_names = [f"num_workers={workers}" for workers in args.workers]
        with stage_settings():  # set-up and warm-up of the project's contenders
            cache, cached_epoch = cached_shallow_contenders(bench)
            project = {
                SCRATCH: epoch_contender(bench, SCRATCH),
                "data path": data_path_contender(bench),
                SHALLOW: epoch_contender(bench, SHALLOW),
                **precision_contenders(bench),
            }
        project |= {"cache": cache, "cached epoch": cached_epoch}
        baselines = {
            "bare": bare_contender(bench),
            **{name: loader_contender(bench, workers) for name, workers in zip(loader_names, args.workers)},
        }
        contenders = baselines | {name: in_stage_settings(contender) for name, contender in project.items()}
        order = [
            "bare",
            SCRATCH,
            "data path",
            SHALLOW,
            "cache",
            "cached epoch",
            *(name for name in project if name.split(" ")[0] in (SCRATCH, DEEP) and name != SCRATCH),
            *loader_names,
        ]  # bare beside scratch: least drift between them
        contenders = {name: contenders[name] for name in order}
        timings = measure(contenders, args.repeats, bench.compute.device)
    epochs = params.strategy_named(SHALLOW).training.epochs
    auto = resolve_compute(dataclasses.replace(params.compute, device=args.device, precision="auto"))
    results: dict[str, float | None] = dict(ratios(timings, loader_names, epochs))
    results |= precision_ratios(timings, bench, auto)
    rss, rss_seconds = (None, 0.0) if args.skip_rss else peak_rss_mb(args.rss_strategy, args.device)
    results["peak_rss_mb"] = rss
    best_loader = max(loader_names, key=lambda name: timings[name].images_per_second)
    notes = {
        "cached_shallow_vs_scratch_epoch": (
            f"includes feature caching, amortised over {epochs} epochs (shallow's strategy.epochs)"
        ),
        "pipeline_vs_torchvision_loader": f"best baseline: {best_loader}",
        "auto_vs_best_precision": f"auto chooses {mode_name(auto)} here",
        "peak_rss_mb": "skipped (--skip-rss)"
        if rss is None
        else f"train@{args.rss_strategy}, {RSS_EPOCHS} epoch, default data sizes, {rss_seconds:.0f} s",
    }
    print_table(measurement_rows(timings, loader_names, epochs), results, notes)
    wall = time.perf_counter() - started
    print(
        f"\nwall time {wall:.1f} s; 1-min load average {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after (on {os.cpu_count()} CPUs)"
    )
    summary = {name: None if value is None else round(value, DECIMALS) for name, value in results.items()}
    summary |= {
        "device": str(bench.compute.device),
        "precision": "fp32" if bench.compute.amp_dtype is None else str(bench.compute.amp_dtype).removeprefix("torch."),
        "channels_last": bench.compute.channels_last,
        "images": args.images,
        "batch_size": bench.batch_size,
        "repeats": args.repeats,
        "amortised_epochs": epochs,
        "best_loader_workers": args.workers[loader_names.index(best_loader)],
        "peak_rss_strategy": None if rss is None else args.rss_strategy,
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "wall_seconds": round(wall, DECIMALS),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    run_stage(main)
