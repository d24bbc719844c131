"""At your data size: every strategy at each training-set size, the verdict per size, and where it changes.

Reads results/sizes/<n>/<strategy>/ (train_subset@<strategy>-<n>) for each n of data.train_sizes, and the
whole split's results/<strategy>/ as the size `all`. Writes:
  plots/data_budget.json       one row per (strategy, size): train_per_class, n_train, the mean test top-1
                               over seeds with the lowest and highest seed, one seed's training FLOPs, and the
                               strategy's status at that size (best, worse, equivalent or inconclusive)
  plots/figures/data_budget.png and report.md's section, the crossover sentence first, only when
  data.train_sizes lists a size; verdict.json then gains best_at.<size> (`all` included)
The verdict at each size is the whole split's rule (transfer/statistics/decision.py) on that size's top-1
correctness, read by the same helper as the whole split's (comparison.load_strategies). The crossover sentence
claims a best only at a size where every other strategy is shown worse or equivalent to it.
With no size listed, the whole split's rows alone are written and nothing else changes.
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
from transfer.statistics.decision import BEST, EQUIVALENT, INCONCLUSIVE, WORSE, decide  # noqa: E402

FIGURE_TITLE = "Test top-1 against training images per class"


@dataclasses.dataclass(frozen=True)
class SizeOutcome:
    """Every strategy at one training-set size: results and the verdict's answer there."""

    label: str  # "10", or "all" for the whole split
    train_per_class: int  # the size; for the whole split its mean images per class
    n_train: int  # training images
    results: list[StrategyResult]  # under the strategies' own names
    run_names: dict[str, str]  # strategy -> what names its files (paths.subset_run_name, or the strategy)
    answer: dict  # decide()'s fields: best, status (strategy -> best/worse/equivalent/inconclusive), claims_for

    @property
    def best(self) -> str:
        """The strategy of the best mean test top-1 at this size (ties: the first in params.yaml)."""
        return self.answer["best"]

    @property
    def shown(self) -> bool:
        """Whether the best stands apart: every other strategy shown worse than it or equivalent to it."""
        return all(status in (BEST, WORSE, EQUIVALENT) for status in self.answer["status"].values())

    def named(self, status: str) -> list[str]:
        """The strategies of one status at this size, in params.yaml's order."""
        return [name for name, value in self.answer["status"].items() if value == status]


def answer_at_size(params: Params, results: list[StrategyResult], correct: dict) -> dict:
    """The verdict's rule at one size: correct is name -> top-1 correctness (images, seeds), params.yaml's order."""
    margin = params.report.equivalence_margin
    return decide(correct, margin) if len(correct) >= 2 else verdict.single_strategy_answer(results[0], margin)


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
    """Every strategy's run on `size` images per class, judged as the whole split's are."""
    run_names = {name: paths.subset_run_name(name, size) for name in params.strategies}
    results = [
        dataclasses.replace(load_result(dataclasses.replace(strategy, name=run_names[name])), strategy=strategy)
        for name, strategy in params.strategies.items()
    ]
    loaded = (
        comparison.load_strategies(
            {run_names[result.strategy.name]: result.metrics for result in results},
            {run_names[result.strategy.name]: result.confusion["seeds"] for result in results},
        )
        if len(results) >= 2
        else {}  # one strategy: nothing to compare, as for the whole split
    )
    correct = {name: loaded[run_names[name]].top1_correct for name in params.strategies if run_names[name] in loaded}
    answer = answer_at_size(params, results, correct)
    return SizeOutcome(str(size), size, size * len(counts), results, run_names, answer)


def whole_split_outcome(params: Params, results: list[StrategyResult], correct: dict, counts) -> SizeOutcome:
    """The whole training split as the size `all`: the results and correctness the rest of the report uses."""
    n_train = int(counts.sum())
    names = {result.strategy.name: result.strategy.name for result in results}
    answer = answer_at_size(params, results, correct)
    return SizeOutcome(ALL_TRAIN_SIZE, round(n_train / len(counts)), n_train, results, names, answer)


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
                    "status": outcome.answer["status"][name],
                }
            )
    return rows


def size_words(outcome: SizeOutcome) -> str:
    """'10 images per class', or 'the whole training split (~450 per class)'."""
    if outcome.label == ALL_TRAIN_SIZE:
        return f"the whole training split (~{outcome.train_per_class} per class)"
    return f"{outcome.train_per_class} images per class"


def size_groups(outcomes: list[SizeOutcome]) -> list[tuple[str | None, list[SizeOutcome]]]:
    """Consecutive sizes whose best is shown and the same, as (best, sizes); a size not shown apart is (None, [it])."""
    groups: list[tuple[str | None, list[SizeOutcome]]] = []
    for outcome in outcomes:
        best = outcome.best if outcome.shown else None
        if groups and best is not None and groups[-1][0] == best:
            groups[-1][1].append(outcome)
        else:
            groups.append((best, [outcome]))
    return groups


def span_words(groups: list, index: int) -> str:
    """The sizes of groups[index] as the crossover sentence says them: up to, from, from ... to, or at."""
    sizes = groups[index][1]
    if index == 0:
        return f"up to {size_words(sizes[-1])}"
    if index == len(groups) - 1:
        return f"from {size_words(sizes[0])}"
    if len(sizes) == 1:
        return f"at {size_words(sizes[0])}"
    return f"from {size_words(sizes[0])} to {size_words(sizes[-1])}"


def crossover_sentence(outcomes: list[SizeOutcome]) -> str:
    """Where the best changes with the training-set size ("up to N images per class, X; from M, Y"), claimed only
    at sizes where the best is shown apart (every other strategy worse or equivalent), or that it does not change.

    With one seed anywhere, the claims are about the trained networks, as the whole split's verdict says.
    """
    seeds = outcomes[-1].answer["seeds"]
    single = [name for name, count in seeds.items() if count < 2]
    networks = any(outcome.answer["claims_for"] == "networks" for outcome in outcomes)
    noun = "network" if networks else "strategy"

    def who(outcome: SizeOutcome) -> str:
        equivalent = outcome.named(EQUIVALENT)
        named = f"{outcome.best}'s" if networks else outcome.best
        return named + (f" ({', '.join(equivalent)} equivalent)" if equivalent else "")

    groups = size_groups(outcomes)
    shown = [(index, group) for index, group in enumerate(groups) if group[0] is not None]
    sentences = []
    if networks:
        sentences.append(
            f"Claims about these trained networks, not the strategies: {', '.join(single)} had one seed, so another "
            "seed could reorder strategies closer than the seed-to-seed spread, which one seed cannot measure."
        )
    if not shown:
        leaders = ", ".join(f"{who(outcome)} at {size_words(outcome)}" for outcome in outcomes)
        sentences.append(
            f"At no training-set size is the best {noun} shown apart from the others (the leaders, each with an "
            f"inconclusive rival: {leaders}), so these results name no crossover; more seeds or test images "
            "would narrow the intervals (docs/statistics.md)."
        )
        return " ".join(sentences)
    elif len({best for _, (best, _) in shown}) == 1:
        listed = ", ".join(outcome.label for _, (_, sizes) in shown for outcome in sizes)
        where = "at every size" if len(shown) == len(groups) else "at every size where it is shown apart"
        sentences.append(
            f"The best {noun} does not change with the training-set size: {who(shown[0][1][1][0])} {where} "
            f"(images per class: {listed})."
        )
    else:
        parts = [f"{span_words(groups, index)}, {who(sizes[0])}" for index, (_, sizes) in shown]
        sentences.append(f"The best {noun} changes with the training-set size: " + "; ".join(parts) + ".")
    for best, sizes in groups:
        if best is None:
            outcome = sizes[0]
            inconclusive = ", ".join(outcome.named(INCONCLUSIVE))
            sentences.append(
                f"At {size_words(outcome)}, {outcome.best} leads but is not shown apart from {inconclusive} "
                "(inconclusive), so no claim is made there."
            )
    return " ".join(sentences)


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
        "data.split_seed) with at least data.subset_min_steps optimizer steps (docs/data-budget.md). The status at "
        "each size is the verdict's rule on that size's test predictions (docs/statistics.md): best, worse (shown "
        "worse), equivalent (within report.equivalence_margin of the best, shown) or inconclusive.\n",
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


def read_data_budget(params: Params, results: list[StrategyResult], correct: dict) -> list[SizeOutcome]:
    """Every size's outcome, smallest first and the whole split last; read and checked before anything is written.

    results and correct (name -> top-1 correctness (images, seeds)) are the whole split's, as the verdict has them.
    """
    counts = class_counts()
    outcomes = [subset_outcome(params, size, counts) for size in sorted(params.data.train_sizes)]
    return [*outcomes, whole_split_outcome(params, results, correct, counts)]


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
