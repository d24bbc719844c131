"""At your data size: every strategy at each training-set size, the verdict per size, and where it changes.

Reads results/sizes/<n>/<strategy>/ (train_subset@<strategy>-<n>) for each n of data.train_sizes, and the
whole split's results/<strategy>/ as the size `all`. Writes:
  plots/data_budget.json       one row per (strategy, size): train_per_class, n_train, the mean test top-1
                               over seeds with the lowest and highest seed, one seed's training FLOPs, and the
                               strategy's status at that size (best, tied_with_best or worse)
  plots/figures/data_budget.png and report.md's section, the crossover sentence first, only when
  data.train_sizes lists a size; verdict.json then gains best_at.<size> (`all` included)
The verdict at each size comes from the full-size verdict's own rules (transfer/report/verdict.py) through one
adapter, verdict_at_size: the paired tests of comparison.py on that size's predictions, Holm-corrected.
With no size listed, the whole split's row alone is written and nothing else changes.
"""

import dataclasses
import json

import matplotlib

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from transfer import paths  # noqa: E402
from transfer.atomic import write_json  # noqa: E402
from transfer.config import ALL_TRAIN_SIZE, Params  # noqa: E402
from transfer.errors import UserError  # noqa: E402
from transfer.report import comparison, verdict  # noqa: E402
from transfer.report.figures import save_figure  # noqa: E402
from transfer.report.layout import DATA_BUDGET_FIGURE_PATH, DATA_BUDGET_PATH, REPORT_PATH, VERDICT_PATH  # noqa: E402
from transfer.report.strategy_result import StrategyResult, load_result, read_json  # noqa: E402

FIGURE_TITLE = "Test top-1 against training images per class"


@dataclasses.dataclass(frozen=True)
class SizeOutcome:
    """Every strategy at one training-set size: results, paired tests and the verdict's answer."""

    label: str  # "10", or "all" for the whole split
    train_per_class: int  # the size; for the whole split its mean images per class
    n_train: int  # training images
    results: list[StrategyResult]  # under the strategies' own names
    run_names: dict[str, str]  # strategy -> what names its files (paths.subset_run_name, or the strategy)
    best: str
    status: dict[str, str]  # strategy -> best, tied_with_best or worse


def verdict_at_size(params: Params, results: list[StrategyResult], pairs: list[dict]) -> tuple[str, dict[str, str]]:
    """THE ADAPTER to the verdict module: the best strategy at one size and each strategy's status there.

    The one place that reads the verdict's answer, so a new verdict (statuses of its own) changes only this.
    """
    cost_rows = [
        {
            "strategy": result.strategy.name,
            "train_flops": result.metrics["train_flops"],
            "train_seconds": result.timing["seconds_per_seed"],
        }
        for result in results
    ]
    answer = verdict.verdict(params, results, pairs, cost_rows)
    best, tied = answer["best"], set(filter(None, answer["tied_with_best"].split(", ")))
    status = {
        result.strategy.name: "best"
        if result.strategy.name == best
        else ("tied_with_best" if result.strategy.name in tied else "worse")
        for result in results
    }
    return best, status


def class_counts() -> np.ndarray:
    """Training images of each class with any, from the prepared splits (the plots stage depends on them)."""
    try:
        with np.load(paths.PREPARED_PATH, allow_pickle=False) as arrays:
            counts = np.bincount(arrays["train_labels"])
    except (FileNotFoundError, KeyError):
        missing = f"prepared data {paths.PREPARED_PATH} is missing or has no training labels"
        raise UserError(f"{missing}; run: dvc repro prepare") from None
    return counts[counts > 0]


def subset_outcome(params: Params, size: int, counts: np.ndarray) -> SizeOutcome:
    """Every strategy's run on `size` images per class, compared as the whole split's are."""
    run_names = {name: paths.subset_run_name(name, size) for name in params.strategies}
    results = [
        dataclasses.replace(load_result(dataclasses.replace(strategy, name=run_names[name])), strategy=strategy)
        for name, strategy in params.strategies.items()
    ]
    by_run = {run_names[result.strategy.name]: result for result in results}
    owner = {run: result.strategy.name for run, result in by_run.items()}
    pairs = [
        {**pair, "a": owner[pair["a"]], "b": owner[pair["b"]]}
        for pair in comparison.compare_strategies(
            {run: result.metrics for run, result in by_run.items()},
            {run: result.confusion["seeds"] for run, result in by_run.items()},
        )
    ]
    best, status = verdict_at_size(params, results, pairs)
    return SizeOutcome(str(size), size, size * len(counts), results, run_names, best, status)


def whole_split_outcome(params: Params, results: list[StrategyResult], pairs: list[dict], counts) -> SizeOutcome:
    """The whole training split as the size `all`: the results and pairs the rest of the report uses."""
    best, status = verdict_at_size(params, results, pairs)
    n_train = int(counts.sum())
    names = {result.strategy.name: result.strategy.name for result in results}
    return SizeOutcome(ALL_TRAIN_SIZE, round(n_train / len(counts)), n_train, results, names, best, status)


def seed_top1(run_name: str, seeds: list[int]) -> list[float]:
    """Each seed's test top-1 (results/<run>/seeds/seed_<n>/metrics.json)."""
    return [read_json(paths.seed_dir(run_name, seed) / paths.METRICS_FILE)["test_top1"] for seed in seeds]


def budget_rows(outcomes: list[SizeOutcome]) -> list[dict]:
    """plots/data_budget.json: per strategy (params order), per size (smallest first, all last)."""
    rows = []
    names = [result.strategy.name for result in outcomes[0].results]
    for name in names:
        for outcome in outcomes:
            result = next(result for result in outcome.results if result.strategy.name == name)
            seeds = seed_top1(outcome.run_names[name], result.confusion["seeds"])
            rows.append(
                {
                    "strategy": name,
                    "size": outcome.label,
                    "train_per_class": outcome.train_per_class,
                    "n_train": outcome.n_train,
                    "test_top1": result.metrics["test_top1"],
                    "test_top1_min": min(seeds),
                    "test_top1_max": max(seeds),
                    "train_flops": result.metrics["train_flops"],  # one seed's run
                    "status": outcome.status[name],
                }
            )
    return rows


def crossover_sentence(outcomes: list[SizeOutcome]) -> str:
    """Where the best strategy changes with the training-set size ("up to N images per class, X; from M, Y")."""

    def size_words(outcome: SizeOutcome) -> str:
        if outcome.label == ALL_TRAIN_SIZE:
            return f"the whole training split (~{outcome.train_per_class} per class)"
        return f"{outcome.train_per_class} images per class"

    runs: list[list[SizeOutcome]] = []
    for outcome in outcomes:
        if runs and runs[-1][0].best == outcome.best:
            runs[-1].append(outcome)
        else:
            runs.append([outcome])
    if len(runs) == 1:
        sizes = ", ".join(outcome.label for outcome in outcomes)
        return (
            f"The best strategy does not change with the training-set size: {runs[0][0].best} at every size "
            f"(images per class: {sizes})."
        )
    parts = [f"up to {size_words(runs[0][-1])}, {runs[0][0].best}"]
    for run in runs[1:]:
        span = size_words(run[0]) if len(run) == 1 else f"{size_words(run[0])} to {size_words(run[-1])}"
        parts.append(f"from {span}, {run[0].best}")
    return "The best strategy changes with the training-set size: " + "; ".join(parts) + "."


def draw_budget_figure(rows: list[dict]) -> plt.Figure:
    """Test top-1 against training images per class (log x): a line per strategy in its band over seeds."""
    figure, axes = plt.subplots(figsize=(6, 4))
    for name in dict.fromkeys(row["strategy"] for row in rows):
        own = [row for row in rows if row["strategy"] == name]
        x = [row["train_per_class"] for row in own]
        (line,) = axes.plot(x, [row["test_top1"] for row in own], "o-", label=name)
        lows, highs = [row["test_top1_min"] for row in own], [row["test_top1_max"] for row in own]
        axes.fill_between(x, lows, highs, color=line.get_color(), alpha=0.2, linewidth=0)
    axes.set_xscale("log")
    axes.set_xlabel("training images per class (the last point: the whole split)")
    axes.set_ylabel("test top-1 accuracy")
    axes.set_title(FIGURE_TITLE)
    axes.legend(fontsize="small")
    return figure


def budget_section(outcomes: list[SizeOutcome], rows: list[dict]) -> str:
    """report.md's section: the crossover sentence, the table by size, the figure."""
    lines = [
        "## At your data size\n",
        crossover_sentence(outcomes) + "\n",
        "Every strategy trained on smaller training sets (data.train_sizes; stratified, nested, seeded by "
        "data.split_seed) with at least data.subset_min_steps optimizer steps (docs/data-budget.md). Status at "
        "each size follows the verdict's rules on that size's test predictions: best, tied_with_best (not "
        "significantly different from it, Holm-corrected) or worse.\n",
        "| images per class | training images | strategy | test top-1 | lowest, highest seed | status "
        "| training FLOPs |",
        "|---:|---:|---|---:|---|---|---:|",
    ]
    by_size = sorted(rows, key=lambda row: [outcome.label for outcome in outcomes].index(row["size"]))
    lines += [
        f"| {row['size']} | {row['n_train']:,} | {row['strategy']} | {row['test_top1']:.4f} "
        f"| {row['test_top1_min']:.4f}, {row['test_top1_max']:.4f} | {row['status']} | {row['train_flops']:.3g} |"
        for row in by_size
    ]
    figure_link = DATA_BUDGET_FIGURE_PATH.relative_to(REPORT_PATH.parent).as_posix()
    lines.append(f"\n![{FIGURE_TITLE}]({figure_link})\n")
    return "\n".join(lines) + "\n"


def add_best_at(best_at: dict[str, str]) -> None:
    """verdict.json gains best_at.<size>: one `dvc exp show` column per size (statuses stay in data_budget.json)."""
    answer = json.loads(VERDICT_PATH.read_text())
    write_json(VERDICT_PATH, {**answer, "best_at": best_at})


def read_data_budget(params: Params, results: list[StrategyResult], pairs: list[dict]) -> list[SizeOutcome]:
    """Every size's outcome, smallest first and the whole split last; read and checked before anything is written.

    results and pairs are the whole split's, as the rest of the report has them.
    """
    counts = class_counts()
    outcomes = [subset_outcome(params, size, counts) for size in sorted(params.data.train_sizes)]
    return [*outcomes, whole_split_outcome(params, results, pairs, counts)]


def write_data_budget(outcomes: list[SizeOutcome]) -> str:
    """Write plots/data_budget.json (with sizes, also the figure and verdict.json's best_at); return report.md's
    section, or '' when only the whole split trained. verdict.json must be written already."""
    rows = budget_rows(outcomes)
    write_json(DATA_BUDGET_PATH, rows)
    if len(outcomes) == 1:
        return ""
    save_figure(draw_budget_figure(rows), DATA_BUDGET_FIGURE_PATH)
    add_best_at({outcome.label: outcome.best for outcome in outcomes})
    return budget_section(outcomes, rows)
