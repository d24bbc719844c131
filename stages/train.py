"""Stage train@<strategy>: train one strategy, keep its best-validation weights, score them on the test set.

Run as: python -m stages.train <strategy>. The recipe is transfer/training/recipe.py; which runs a strategy
makes (lr candidates, seeds) is transfer/training/runs.py; what is written is transfer/training/outputs.py.
"""

import argparse
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


def train(strategy_name: str) -> None:
    """Train one strategy from params.yaml and (rank 0) write its model, metrics, history and timing."""
    params = load_params()
    strategy = params.strategy_named(strategy_name)
    ranks = distributed.ranks_from_torchrun()
    distributed.check_world_size(ranks, params.compute.nproc)
    if strategy.training.batch_size % ranks.world_size:
        raise UserError(
            f"batch size {strategy.training.batch_size} of train@{strategy.name} does not split over compute.nproc = "
            f"{ranks.world_size} processes; use a multiple of {ranks.world_size}"
        )
    make_deterministic()
    compute = resolve_compute(params.compute, ranks.local_rank)
    distributed.start_processes(ranks, compute.device)
    try:
        started = time.perf_counter()
        run = RunContext(
            params, strategy, load_prepared(paths.PREPARED_PATH), compute, strategy.training.seeds[0], ranks
        )
        with out_of_memory_as_user_error(f"train@{strategy.name}"):
            strategy_runs = train_strategy(run)
        if ranks.is_main:
            chosen = RunContext(params, strategy_runs.chosen, run.data, compute, run.seed, ranks)
            write_strategy_results(chosen, strategy_runs, time.perf_counter() - started)
    except BaseException:  # a mistake, a diverging loss or Ctrl-C: no partial results stay behind
        if ranks.is_main:
            discard_live_history(strategy.name)
        raise
    finally:
        distributed.stop_processes()


def raise_keyboard_interrupt(signal_number: int, frame: object) -> None:
    """SIGTERM handler: unwind like Ctrl-C, so both end the same way."""
    raise KeyboardInterrupt


def main() -> None:
    """Command line: python -m stages.train <strategy>."""
    parser = argparse.ArgumentParser(prog="python -m stages.train", description=__doc__.splitlines()[0])
    parser.add_argument("strategy", help="a key of `strategies` in params.yaml, e.g. shallow, deep or scratch")
    strategy_name = parser.parse_args().strategy
    compute = load_params().compute
    if compute.nproc > 1 and "WORLD_SIZE" not in os.environ:
        resolve_compute(compute)  # settles precision 'auto' once, before the ranks start, so all read one choice
        distributed.relaunch_under_torchrun(compute.nproc, [strategy_name])
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    try:
        train(strategy_name)
    except KeyboardInterrupt:
        # The epoch in progress is dropped; completed epochs are in the checkpoint, written atomically.
        print(
            f"train@{strategy_name}: interrupted; no results were written. Completed epochs are kept in "
            f"{paths.checkpoint_dir(strategy_name)}/: run the same dvc command again to resume from there",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(130)


if __name__ == "__main__":
    run_stage(main)
