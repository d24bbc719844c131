"""Stage train@<strategy>: train one strategy, keep its best-validation weights, score them on the test set.

Run as: python -m stages.train <strategy> [<images per class>]. With a size, the stage is
train_subset@<strategy>-<size>: the same training on a smaller training set (transfer/training/subset.py, whose
budget rule may make each epoch several passes), writing under sizes/<size>/<strategy> (transfer/paths.py).
The recipe is transfer/training/recipe.py; which runs a strategy makes (lr candidates, seeds) is
transfer/training/runs.py; what is written is transfer/training/outputs.py.
"""

import argparse
import dataclasses
import os
import signal
import sys
import time

from transfer import paths
from transfer.compute import distributed
from transfer.compute.device import make_deterministic, out_of_memory_as_user_error, resolve_compute
from transfer.config import load_params
from transfer.errors import UserError, run_stage
from transfer.training.context import RunContext
from transfer.training.live_history import discard_live_history
from transfer.training.outputs import write_strategy_results
from transfer.training.prepared_data import load_prepared
from transfer.training.runs import train_strategy
from transfer.training.subset import passes_per_epoch, training_subset


def train(strategy_name: str, train_per_class: int = 0) -> None:
    """Train one strategy from params.yaml and (rank 0) write its model, metrics, history and timing.

    train_per_class above 0: on that many training images of each class (0: the whole training split).
    """
    params = load_params()
    strategy = params.strategy_named(strategy_name)
    data = load_prepared(paths.PREPARED_PATH)
    run_name, passes = "", 1
    if train_per_class:
        data = training_subset(data, train_per_class, params.data.split_seed)
        passes = passes_per_epoch(strategy, len(data.train_labels), params.data.subset_min_steps)
        run_name = paths.subset_run_name(strategy_name, train_per_class)
    ranks = distributed.ranks_from_torchrun()
    distributed.check_world_size(ranks, params.compute.nproc)
    if strategy.training.batch_size % ranks.world_size:
        raise UserError(
            f"batch size {strategy.training.batch_size} of {paths.train_stage_name(strategy_name, train_per_class)} "
            f"does not split over compute.nproc = {ranks.world_size} processes; use a multiple of {ranks.world_size}"
        )
    make_deterministic()
    compute = resolve_compute(params.compute, ranks.local_rank)
    distributed.start_processes(ranks, compute.device)
    try:
        started = time.perf_counter()
        first_seed = strategy.training.seeds[0]
        run = RunContext(params, strategy, data, compute, first_seed, ranks, train_per_class, run_name, passes)
        with out_of_memory_as_user_error(run.stage_name):
            strategy_runs = train_strategy(run)
        if ranks.is_main:
            chosen = dataclasses.replace(run, strategy=strategy_runs.chosen)
            write_strategy_results(chosen, strategy_runs, time.perf_counter() - started)
    except BaseException:  # a mistake, a diverging loss or Ctrl-C: no partial results stay behind
        if ranks.is_main:
            discard_live_history(run_name or strategy.name)
        raise
    finally:
        distributed.stop_processes()


def images_per_class(value: str | None) -> int:
    """The optional size argument as a number: 0 when absent (the whole split), else a whole number above 0."""
    if value is None:
        return 0
    if not value.isdigit() or int(value) == 0:
        raise UserError(
            f"python -m stages.train: {value!r} is not a number of images per class above 0, e.g. 10 (the whole "
            "split trains without one)"
        )
    return int(value)


def raise_keyboard_interrupt(signal_number: int, frame: object) -> None:
    """SIGTERM handler: unwind like Ctrl-C, so both end the same way."""
    raise KeyboardInterrupt


def main() -> None:
    """Command line: python -m stages.train <strategy> [<images per class>]."""
    parser = argparse.ArgumentParser(prog="python -m stages.train", description=__doc__.splitlines()[0])
    parser.add_argument("strategy", help="a key of `strategies` in params.yaml, e.g. shallow, deep or scratch")
    parser.add_argument(
        "train_per_class",
        nargs="?",
        help="train on this many images of each class (an entry of data.train_sizes); default: the whole split",
    )
    arguments = parser.parse_args()
    # params.yaml first: its line for an `all` in data.train_sizes (dvc.yaml's matrix passes it here) says what to
    # write instead, which the argument's own check cannot.
    compute = load_params().compute
    strategy_name, train_per_class = arguments.strategy, images_per_class(arguments.train_per_class)
    output_name = paths.subset_run_name(strategy_name, train_per_class) if train_per_class else strategy_name
    if compute.nproc > 1 and "WORLD_SIZE" not in os.environ:
        resolve_compute(compute)  # settles precision 'auto' once, before the ranks start, so all read one choice
        size_argument = [str(train_per_class)] if train_per_class else []
        distributed.relaunch_under_torchrun(compute.nproc, [strategy_name, *size_argument])
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    try:
        train(strategy_name, train_per_class)
    except KeyboardInterrupt:
        # The epoch in progress is dropped; completed epochs are in the checkpoint, written atomically.
        print(
            f"{paths.train_stage_name(strategy_name, train_per_class)}: interrupted; no results were written. "
            f"Completed epochs are kept in {paths.checkpoint_dir(output_name)}/: run the same dvc command again to "
            "resume from there",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(130)


if __name__ == "__main__":
    run_stage(main)
