"""From the timings to the ratios, their verdicts against the targets, the table and the JSON line."""

import os
from dataclasses import dataclass

import torch

from benchmarks import keys
from benchmarks.keys import DEEP, PRECISION_MODES, SCRATCH, ContenderKey, Kind, PrecisionMode
from benchmarks.measurement import RSS_EPOCHS, PeakRss, Timing
from transfer.compute.device import Compute

DECIMALS = 3  # of every float in the table and the JSON line
# name: (comparison, target); every ratio without one is info only
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

Row = tuple[str, float, str, str]  # a measurement: name, value, unit, note


@dataclass(frozen=True)
class Outcome:
    """What one run measured, and what it measured with: everything the report reads."""

    timings: dict[ContenderKey, Timing]
    compute: Compute  # where and how the bench's contenders ran
    auto: PrecisionMode  # the mode compute.precision auto chooses here
    amortised_epochs: int  # shallow's epochs, over which feature caching is amortised
    images: int  # per timed epoch
    batch_size: int
    repeats: int
    rss: PeakRss | None  # None: skipped

    def best_loader(self) -> ContenderKey:
        """The DataLoader contender with the highest throughput (the first of a tie)."""
        loaders = [key for key in self.timings if key.kind is Kind.LOADER]
        return max(loaders, key=lambda key: self.timings[key].images_per_second)

    def amortised_cached_seconds(self) -> float:
        """(feature caching + epochs * a cached epoch) / epochs: what a cached shallow epoch costs in a real run."""
        epochs = self.amortised_epochs
        return (self.timings[keys.FEATURE_CACHE].best + epochs * self.timings[keys.CACHED_EPOCH].best) / epochs


# ---------------------------------------------------------------------------------------------
# Ratios


def throughput_ratios(outcome: Outcome) -> dict[str, float]:
    """The five throughput ratios from the contenders' best repeats."""
    timings = outcome.timings
    scratch, bare = timings[keys.SCRATCH_EPOCH], timings[keys.BARE]
    return {
        "train_step_vs_bare": scratch.images_per_second / bare.images_per_second,
        "data_vs_model": timings[keys.DATA_PATH].images_per_second / bare.images_per_second,
        "shallow_vs_scratch_epoch": timings[keys.SHALLOW_EPOCH].best / scratch.best,
        "cached_shallow_vs_scratch_epoch": outcome.amortised_cached_seconds() / scratch.best,
        "pipeline_vs_torchvision_loader": scratch.images_per_second / timings[outcome.best_loader()].images_per_second,
    }


def precision_ratios(outcome: Outcome) -> dict[str, float]:
    """bf16_vs_fp32 (in the bench's layout), deep_vs_scratch_epoch and auto_vs_best_precision (in auto's mode)."""
    timings, auto, channels_last = outcome.timings, outcome.auto, outcome.compute.channels_last

    def throughput(strategy: str, mode: PrecisionMode) -> float:
        """Images/s of strategy's epoch in mode."""
        return timings[keys.precision_epoch(strategy, mode)].images_per_second

    def auto_vs_best(strategy: str) -> float:
        """Throughput of auto's mode / the best mode's, for one strategy."""
        return throughput(strategy, auto) / max(throughput(strategy, mode) for mode in PRECISION_MODES)

    bf16, fp32 = PrecisionMode(torch.bfloat16, channels_last), PrecisionMode(None, channels_last)
    return {
        "bf16_vs_fp32": throughput(SCRATCH, bf16) / throughput(SCRATCH, fp32),
        "deep_vs_scratch_epoch": timings[keys.precision_epoch(DEEP, auto)].best
        / timings[keys.precision_epoch(SCRATCH, auto)].best,
        "auto_vs_best_precision": min(auto_vs_best(SCRATCH), auto_vs_best(DEEP)),
    }


def results(outcome: Outcome) -> dict[str, float | None]:
    """Every ratio, then peak_rss_mb (None when skipped): the JSON line's first keys, in order."""
    rss = None if outcome.rss is None else outcome.rss.mib
    return throughput_ratios(outcome) | precision_ratios(outcome) | {"peak_rss_mb": rss}


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


# ---------------------------------------------------------------------------------------------
# The table


def spread(timing: Timing) -> str:
    """'min-max s over n' of a contender's repeats."""
    return f"{min(timing.seconds):.3f}-{max(timing.seconds):.3f} s over {len(timing.seconds)}"


def throughput_row(name: str, timing: Timing, note: str = "") -> Row:
    """A contender's images/s, noted with the spread of its repeats (and note)."""
    return name, timing.images_per_second, "img/s", f"{spread(timing)}{note}"


def seconds_row(name: str, timing: Timing) -> Row:
    """A contender's best seconds, noted with the spread of its repeats."""
    return name, timing.best, "s", spread(timing)


def measurement_rows(outcome: Outcome) -> list[Row]:
    """Every raw measurement: the fixed contenders, then each precision mode's epoch, then each DataLoader."""
    timings, epochs = outcome.timings, outcome.amortised_epochs
    rows = [
        throughput_row("bare PyTorch loop (model step alone)", timings[keys.BARE]),
        throughput_row("train_one_epoch scratch, augmented", timings[keys.SCRATCH_EPOCH]),
        throughput_row("data path alone (ImageBatches.inputs)", timings[keys.DATA_PATH]),
        ("scratch epoch", timings[keys.SCRATCH_EPOCH].best, "s", ""),
        seconds_row("shallow epoch, augmented", timings[keys.SHALLOW_EPOCH]),
        seconds_row("feature caching (training_batches)", timings[keys.FEATURE_CACHE]),
        seconds_row("shallow epoch on cached features", timings[keys.CACHED_EPOCH]),
        ("cached shallow, amortised", outcome.amortised_cached_seconds(), "s", f"(cache + {epochs} epochs) / {epochs}"),
    ]
    rows += [
        throughput_row(f"train_one_epoch {key.strategy} {key.mode.name}", timing)
        for key, timing in timings.items()
        if key.kind is Kind.EPOCH and key.mode is not None
    ]
    rows += [
        throughput_row(f"torchvision DataLoader, num_workers={key.workers}", timing, "; workers start each epoch")
        for key, timing in timings.items()
        if key.kind is Kind.LOADER
    ]
    return rows


def notes(outcome: Outcome) -> dict[str, str]:
    """The table's note beside each result that has one."""
    rss = outcome.rss
    return {
        "cached_shallow_vs_scratch_epoch": (
            f"includes feature caching, amortised over {outcome.amortised_epochs} epochs (shallow's strategy.epochs)"
        ),
        "pipeline_vs_torchvision_loader": f"best baseline: num_workers={outcome.best_loader().workers}",
        "auto_vs_best_precision": f"auto chooses {outcome.auto.name} here",
        "peak_rss_mb": "skipped (--skip-rss)"
        if rss is None
        else f"train@{rss.strategy}, {RSS_EPOCHS} epoch, default data sizes, {rss.seconds:.0f} s",
    }


def print_table(outcome: Outcome) -> None:
    """Measurements, then each result with its target and verdict."""
    print(f"\n{'measurement':<44} {'value':>12}  {'unit':<6} note")
    for name, value, unit, note in measurement_rows(outcome):
        print(f"{name:<44} {value:>12.{DECIMALS}f}  {unit:<6} {note}")
    print(f"\n{'result':<34} {'value':>10}  {'unit':<6} {'target':<8} {'':<7} note")
    result_notes = notes(outcome)
    for name, value in results(outcome).items():
        target, outcome_text = verdict(name, value)
        unit = "MiB" if name == "peak_rss_mb" else "ratio"
        shown = "null" if value is None else f"{value:.{DECIMALS}f}"
        print(f"{name:<34} {shown:>10}  {unit:<6} {target:<8} {outcome_text:<7} {result_notes.get(name, '')}")


# ---------------------------------------------------------------------------------------------
# The JSON line


def summary(outcome: Outcome, wall_seconds: float) -> dict:
    """The JSON line: every result (3 decimals), then what the run measured with."""
    compute, rss = outcome.compute, outcome.rss
    rounded = {name: None if value is None else round(value, DECIMALS) for name, value in results(outcome).items()}
    return rounded | {
        "device": str(compute.device),
        "precision": "fp32" if compute.amp_dtype is None else str(compute.amp_dtype).removeprefix("torch."),
        "channels_last": compute.channels_last,
        "images": outcome.images,
        "batch_size": outcome.batch_size,
        "repeats": outcome.repeats,
        "amortised_epochs": outcome.amortised_epochs,
        "best_loader_workers": outcome.best_loader().workers,
        "peak_rss_strategy": None if rss is None else rss.strategy,
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "wall_seconds": round(wall_seconds, DECIMALS),
    }
