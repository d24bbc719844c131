"""Stage plots: gather every strategy's results into comparison data, figures and a report.

Run as: python -m stages.plots

Reads results/<strategy>/ (metrics, history, confusion, timing and provenance; each figure the mean
over the strategy's seeds, with its spread). Writes, under plots/ (rendered by DVC through the
top-level `plots:` of dvc.yaml):
  epochs.json                per-epoch rows of every strategy (a `strategy` field each): each column's
                             mean with its _min/_max over seeds
  final_scores.json          one row per strategy and test accuracy: mean and std over seeds
  confusion.json             one {strategy, actual, predicted} row per test prediction (every seed's)
  figures/<figure>.png       the same charts drawn by matplotlib, a confusion heatmap per strategy, cost.png
  report.md                  the verdict, the final table (mean ± std), provenance, figures, most-confused
                             classes, the paired comparison and the cost table
  verdict.json               the best strategy, each other's status against it (worse, equivalent within
                             report.equivalence_margin, inconclusive), what the claims hold for, the cheapest
                             of best and equivalent, the caveats (transfer/report/verdict.py, statistics/decision.py;
                             docs/statistics.md); declared as metrics in dvc.yaml
  comparison.json            paired statistics of every two strategies (transfer/report/comparison.py), from
                             predictions/<strategy>/seed_<n>.npz checked against the prepared test labels
  cost.json                  test top-1 against training FLOPs, one row per strategy (transfer/report/cost.py)
  data_budget.json           test top-1 per (strategy, training-set size): data.train_sizes from
                             results/sizes/<n>/<strategy>/ and the whole split; with sizes also
                             figures/data_budget.png, verdict.json's best_at and a report section
                             (transfer/report/data_budget.py)
Every file holds all strategies, so dvc.yaml names none: a strategy added in params.yaml shows everywhere.
"""

import argparse

from transfer.config import load_params
from transfer.errors import run_stage
from transfer.report.make import make_report


def main(argv: list[str] | None = None) -> None:
    """Command line: python -m stages.plots."""
    argparse.ArgumentParser(prog="python -m stages.plots", description=__doc__.splitlines()[0]).parse_args(argv)
    make_report(load_params())


if __name__ == "__main__":
    run_stage(main)
