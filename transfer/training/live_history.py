"""Per-epoch history written while a train stage runs, so `dvc plots diff` / `dvc exp show` see curves grow."""

import json
import shutil

from transfer import paths
from transfer.aggregate import combine_histories
from transfer.atomic import write_json


def earlier_seed_rows(strategy_name: str, earlier_seeds: list[int], epochs: int) -> list[list[dict]]:
    """The first `epochs` history rows of each earlier seed whose history.json already holds that many."""
    histories = []
    for seed in earlier_seeds:
        path = paths.seed_dir(strategy_name, seed) / paths.HISTORY_FILE
        # Absent when DVC removed the outputs before a resumed run: that seed is left out until the end.
        rows = json.loads(path.read_text()) if path.exists() else []
        if len(rows) >= epochs:
            histories.append(rows[:epochs])
    return histories


def write_live_history(strategy_name: str, seeds: tuple[int, ...], seed: int, rows: list[dict]) -> None:
    """Rewrite this seed's history.json and the strategy's combined one with the epochs finished so far."""
    write_json(paths.seed_dir(strategy_name, seed) / paths.HISTORY_FILE, rows)
    # Combined over the seeds finished so far (their first len(rows) epochs) and the running one, so
    # the curve grows epoch by epoch; while the first seed runs it is that seed alone. The stage
    # rewrites both files from the finished runs at the end, so final bytes do not depend on this.
    earlier = earlier_seed_rows(strategy_name, list(seeds[: list(seeds).index(seed)]), len(rows))
    write_json(paths.history_path(strategy_name), combine_histories([*earlier, rows]))


def discard_live_history(strategy_name: str) -> None:
    """Remove what the live writes left when a run stops early: a stopped stage leaves no results.

    Only the live history files can be in results/<strategy>/ before the stage's final writes, and
    DVC removes that folder before every run anyway; the checkpoints keep what a rerun resumes from.
    """
    shutil.rmtree(paths.results_dir(strategy_name), ignore_errors=True)
