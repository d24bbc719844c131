"""Throughput of the project's training path against bare PyTorch and a torchvision DataLoader, in one run.

Run from the project root:
    .venv/bin/python -m benchmarks.throughput  # defaults: 2048 images, params.yaml compute and batch size
    .venv/bin/python -m benchmarks.throughput --skip-rss --images 1024 --workers 0 2 --device cpu

Every contender runs in this process, one after another, on the same synthetic uint8 images (and labels)
generated in memory, through the project's own code (transfer.*) with the compute section of params.yaml
(device, precision, channels_last). Each is built and warmed up (2 steps) once, then timed --repeats
times, the repeats interleaved with the other contenders' so that load from other processes hits all
alike; the fastest repeat counts (the least disturbed one). The project's contenders run with the
process-wide settings the train stage applies (transfer.compute.device.make_deterministic); the baselines without
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
                                   epochs = shallow's strategy.epochs, / seconds of a scratch epoch [<= 0.03]
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

The code: keys.py names the contenders, workload.py makes the shared images, baselines.py and contenders.py
build what is timed, measurement.py times it (and the train stage's memory), report.py turns it into ratios.
"""

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.contenders import all_contenders
from benchmarks.keys import SHALLOW, PrecisionMode
from benchmarks.measurement import measure, peak_rss
from benchmarks.report import Outcome, print_table, summary
from benchmarks.workload import make_bench
from transfer.compute.device import Compute, resolve_compute
from transfer.config import DEVICES, PRECISIONS, Params, load_params
from transfer.errors import run_stage

DEFAULT_IMAGES = 2048  # images per timed epoch: 16 steps of 128, about 2 s of scratch training on 2 CPU cores
DEFAULT_REPEATS = 3  # timed repeats per contender; the fastest counts
DEFAULT_WORKERS = (0, 1, 2)  # DataLoader num_workers tried for the torchvision baseline
# The heaviest stage; about 1 min for its one epoch on 2 idle CPU cores ("shallow": ~20 s).
DEFAULT_RSS_STRATEGY = "scratch"


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


def compute_for(params: Params, args: argparse.Namespace, precision: str) -> Compute:
    """params' compute on the command line's device, in the given compute.precision."""
    return resolve_compute(dataclasses.replace(params.compute, device=args.device, precision=precision))


def time_contenders(params: Params, args: argparse.Namespace) -> Outcome:
    """Build every contender on the synthetic images, time them all, and (unless skipped) the train stage's memory."""
    torch.manual_seed(params.strategy.seeds[0])
    with tempfile.TemporaryDirectory(prefix="benchmark-weights-") as temp:
        compute = compute_for(params, args, args.precision)
        bench = make_bench(params, compute, args.images, args.batch_size, Path(temp) / "resnet18.pth")
        print(
            f"benchmark: {args.images} images, batch {bench.batch_size}, on {compute.describe()}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads",
            flush=True,
        )
        timings = measure(all_contenders(bench, args.workers), args.repeats, compute.device)
    return Outcome(
        timings=timings,
        compute=compute,
        auto=PrecisionMode.of(compute_for(params, args, "auto")),
        amortised_epochs=params.strategy_named(SHALLOW).training.epochs,
        images=args.images,
        batch_size=bench.batch_size,
        repeats=args.repeats,
        rss=None if args.skip_rss else peak_rss(args.rss_strategy, args.device),
    )


def main() -> None:
    """Run every contender, then the peak-memory stage, and print the table and one JSON line."""
    params = load_params()
    args = parse_args(params)
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    outcome = time_contenders(params, args)
    print_table(outcome)
    wall = time.perf_counter() - started
    print(
        f"\nwall time {wall:.1f} s; 1-min load average {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after (on {os.cpu_count()} CPUs)"
    )
    print(json.dumps(summary(outcome, wall)))


if __name__ == "__main__":
    run_stage(main)
