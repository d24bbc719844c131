"""The answer first: the best strategy, what is shown of each other one against it, the cheapest fair pick, and
what the claims hold for.

plots/verdict.json (the project's one metrics file, so `dvc exp show` and `dvc metrics diff` show it per
experiment: the headline, every strategy's status and test top-1 beside the answer) and report.md's opening
section, from the rule of transfer/statistics/decision.py applied to the strategies' top-1 correctness:
  - best: the best mean test top-1 (ties: the first in params.yaml);
  - claims_for: `recipes` when every strategy has two seeds or more, else `networks` (the trained ones);
  - status.<strategy>: best, worse, equivalent (within report.equivalence_margin of the best, shown) or
    inconclusive;
  - cheapest_flops / cheapest_seconds: among best and equivalent only, the fewest training FLOPs and the
    fewest seconds per seed (plots/cost.json);
  - detectable_top1_diff: the top-1 gap the rule finds with 80% power at this run's variance;
    seeds_for_one_point: the seeds per strategy that would find 1 point (null: not measurable or not reachable);
  - comparisons (a list, so no column): each strategy's difference from the best and its interval;
  - caveats: what in this run's config and results limits the answer.
"""

from transfer.atomic import write_json
from transfer.config import IMAGENET_WEIGHTS, Params
from transfer.report.layout import READABLE_DATASET_NAMES, VERDICT_PATH
from transfer.report.strategy_result import StrategyResult
from transfer.statistics.decision import BEST, EQUIVALENT, INCONCLUSIVE, MAX_SEEDS, WORSE, decide

PRETRAINING_RESOLUTION = 224  # px: torchvision's ImageNet weights were trained on 224x224 crops
# "Far below" pretraining: under half its side, a pretrained network sees objects at under a quarter of the
# area it learned them at (Touvron et al., NeurIPS 2019, "Fixing the train-test resolution discrepancy").
FAR_BELOW_FRACTION = 0.5
# The ImageNet stem (stride-2 conv, max-pool) shrinks its input 4x: below this side a from-scratch network
# is left 8x8 px after the stem at 32 px, where the CIFAR stem keeps 32x32 (He et al., CVPR 2016, section 4.2).
SMALL_IMAGE_SIDE = 64  # px


def seed_caveat(results: list[StrategyResult], answer: dict) -> str | None:
    """With seeds: the measured spread of each strategy and the pooled one the statistics use; else None."""
    seeded = {result.strategy.name: result.metrics for result in results if result.metrics["num_seeds"] > 1}
    if not seeded or answer["seed_sd"] is None:
        return None  # one seed everywhere: the verdict's first line says what that means
    spread = ", ".join(f"{name} ±{100 * metrics['test_top1_std']:.2f}" for name, metrics in seeded.items())
    caveat = (
        f"seed spread of test top-1 (sample sd, points): {spread}; pooled over them: ±{100 * answer['seed_sd']:.2f} "
        f"({answer['seed_df']} degrees of freedom), assumed alike for every strategy"
    )
    single = [result.strategy.name for result in results if result.metrics["num_seeds"] == 1]
    if single:
        caveat += f"; {', '.join(single)} had one seed and borrow the pooled spread"
    return caveat


def tuning_caveat(results: list[StrategyResult]) -> str | None:
    """Strategies tuned over different numbers of rates: the best of more runs has an edge of its own."""
    counts = {result.strategy.name: result.metrics["lr_candidates"] for result in results}
    if len(set(counts.values())) == 1:
        return None
    tried = ", ".join(f"{name} {count}" for name, count in counts.items())
    return (
        f"unequal tuning (learning rates tried: {tried}): a strategy that picks the best of more runs gains from that "
        "alone; search them alike with strategy.lr_factors"
    )


def names_with_verb(names: list[str], verb: str) -> str:
    """'scratch trains' or 'shallow, deep train'."""
    return f"{', '.join(names)} {verb}s" if len(names) == 1 else f"{', '.join(names)} {verb}"


def config_caveats(params: Params) -> list[str]:
    """Caveats the config alone decides: stand-in inputs, the resolution, the stem."""
    caveats = []
    if params.data.is_synthetic:
        name = READABLE_DATASET_NAMES[params.data.dataset]
        caveats.append(f"stand-in data: synthetic images, not {name}: the ranking says nothing about {name}")
    if params.model.weights != IMAGENET_WEIGHTS:
        caveats.append(
            f"stand-in backbone weights ({params.model.weights}), not ImageNet's: the 'pretrained' strategies start "
            "from these, so their scores say nothing about ImageNet pretraining"
        )
    side, strategies = params.data.image_size, list(params.strategies.values())
    pretrained = [strategy.name for strategy in strategies if strategy.pretrained]
    if pretrained and side < FAR_BELOW_FRACTION * PRETRAINING_RESOLUTION:
        caveats.append(
            f"{names_with_verb(pretrained, 'run')} at {side} px, far below the {PRETRAINING_RESOLUTION} px of "
            "their ImageNet pretraining: a handicap (try data.image_size)"
        )
    stemmed = [s.name for s in strategies if not s.pretrained and s.stem == "imagenet" and side < SMALL_IMAGE_SIDE]
    if stemmed:
        caveats.append(
            f"{names_with_verb(stemmed, 'train')} from scratch with the ImageNet stem at {side} px, which shrinks "
            "images 4x before the first block: a handicap (try stem: cifar)"
        )
    return caveats


def single_strategy_answer(result: StrategyResult, margin: float) -> dict:
    """decide()'s fields for a run of one strategy: nothing to compare."""
    seeds = result.metrics["num_seeds"]
    return {
        "best": result.strategy.name,
        "claims_for": "recipes" if seeds >= 2 else "networks",
        "status": {result.strategy.name: BEST},
        "comparisons": [],
        "images": 0,  # not read: one strategy's predictions are never needed
        "seeds": {result.strategy.name: seeds},
        "equivalence_margin": margin,
        "seed_sd": None,
        "seed_df": 0,
        "detectable_diff": None,
        "seeds_for_one_point": None,
        "image_floor": None,
    }


def rounded(value: float | None) -> float | None:
    """A fraction to 6 decimals (metrics.json's precision), None kept."""
    return None if value is None else round(value, 6)


def verdict(params: Params, results: list[StrategyResult], correct: dict, cost_rows: list[dict]) -> dict:
    """plots/verdict.json's content from each strategy's top-1 correctness (name -> (images, seeds), params order)."""
    margin = params.report.equivalence_margin
    answer = decide(correct, margin) if len(correct) >= 2 else single_strategy_answer(results[0], margin)
    contenders = [row for row in cost_rows if answer["status"][row["strategy"]] in (BEST, EQUIVALENT)]
    caveats = [c for c in [seed_caveat(results, answer), tuning_caveat(results), *config_caveats(params)] if c]
    seconds = {result.strategy.name: result.timing["seconds_per_seed"] for result in results}
    return {
        "best": answer["best"],
        "claims_for": answer["claims_for"],
        "cheapest_flops": min(contenders, key=lambda row: row["train_flops"])["strategy"],
        "cheapest_seconds": min(contenders, key=lambda row: row["train_seconds"])["strategy"],
        "detectable_top1_diff": rounded(answer["detectable_diff"]),
        "seeds_for_one_point": answer["seeds_for_one_point"],
        "num_caveats": len(caveats),
        # One column per strategy each (DVC flattens them to status.<strategy>, test_top1.<strategy>, ...).
        "status": answer["status"],
        "test_top1": {result.strategy.name: result.metrics["test_top1"] for result in results},
        "test_top1_std": {result.strategy.name: result.metrics["test_top1_std"] for result in results},
        # Lists: DVC shows no column for them, and sentences would make `dvc exp show` unreadable.
        "caveats": caveats,
        "comparisons": [
            {key: rounded(value) if isinstance(value, float) else value for key, value in row.items()}
            for row in answer["comparisons"]
        ],
        # What the report's sentences need beyond the columns; a list keeps them out of `dvc exp show`.
        "basis": [
            {
                "equivalence_margin": margin,
                "images": answer["images"],
                "seeds": answer["seeds"],
                "seed_sd": rounded(answer["seed_sd"]),
                "seed_df": answer["seed_df"],
                "image_floor": rounded(answer["image_floor"]),
                "seconds_per_seed": seconds,
            }
        ],
    }


def points(fraction: float) -> str:
    """A top-1 fraction as percentage points, one decimal."""
    return f"{100 * fraction:.1f}"


def duration(seconds: float) -> str:
    """'40 min' or '3.5 h'."""
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def names_with(answer: dict, status: str) -> list[str]:
    """The strategies of one status, in params.yaml's order."""
    return [name for name, value in answer["status"].items() if value == status]


def status_lines(answer: dict, subject: str) -> list[str]:
    """One line per non-empty status: shown worse, equivalent, inconclusive."""
    margin = points(answer["basis"][0]["equivalence_margin"])
    by_status = {status: names_with(answer, status) for status in (WORSE, EQUIVALENT, INCONCLUSIVE)}
    lines = []
    if by_status[WORSE]:
        lines.append(f"- Shown worse than {subject} (top-1, family-wise 5%): {', '.join(by_status[WORSE])}.")
    if by_status[EQUIVALENT]:
        equivalent = ", ".join(by_status[EQUIVALENT])
        lines.append(f"- Equivalent to {subject} (interval within {margin} points): {equivalent}.")
    if by_status[INCONCLUSIVE]:
        lines.append(
            f"- Inconclusive (neither shown worse nor within {margin} points): {', '.join(by_status[INCONCLUSIVE])}."
        )
    return lines


def cheapest_line(answer: dict) -> str:
    """The cheap pick among best and equivalent, or why there is none but the best."""
    if not names_with(answer, EQUIVALENT):
        return f"- Cheapest pick: {answer['best']} itself; no other strategy is shown equivalent to it."
    return (
        f"- Cheapest of the best and the equivalent: {answer['cheapest_flops']} in training FLOPs, "
        f"{answer['cheapest_seconds']} in seconds per seed."
    )


def recipe_requirement(answer: dict) -> str:
    """networks: what an answer about the strategies would take, costed from this run's seconds per seed."""
    basis = answer["basis"][0]
    single = [name for name, seeds in basis["seeds"].items() if seeds < 2]
    extra = sum(basis["seconds_per_seed"][name] * (3 - basis["seeds"][name]) for name in single)
    return (
        f"- **For an answer about the strategies**, train each with at least 2 seeds: `strategy.seeds: [0, 1, 2]` "
        f"adds {duration(extra)} of training on this machine (this run's seconds per seed); the verdict then "
        "speaks of the strategies and says how many seeds a 1-point difference needs."
    )


def sensitivity_line(answer: dict) -> str | None:
    """The gap the rule detects with 80% power, and the seeds 1 point would take."""
    detectable = answer["detectable_top1_diff"]
    if detectable is None:
        return None
    basis = answer["basis"][0]
    line = f"- Sensitivity: this run's rule finds a true top-1 gap of {points(detectable)} points with 80% power"
    if basis["seed_sd"] is None:
        return line + " (between these networks)."
    line += f" (seed spread ±{points(basis['seed_sd'])} points, pooled)"
    needed = answer["seeds_for_one_point"]
    if needed is not None:
        seconds = basis["seconds_per_seed"]
        extra = sum(seconds[name] * max(needed - count, 0) for name, count in basis["seeds"].items())
        return line + f"; 1 point would take {needed} seeds per strategy ({duration(extra)} more training here)."
    floor = basis["image_floor"]
    return line + (
        f"; no number of seeds finds 1 point on these {basis['images']:,} test images: the images alone limit "
        f"it to {points(floor)} points."
        if floor is not None and floor > 0.01
        else f"; 1 point would take more than {MAX_SEEDS} seeds per strategy."
    )


def verdict_section(answer: dict) -> str:
    """report.md's opening section, in words."""
    best, top1 = answer["best"], answer["test_top1"][answer["best"]]
    seeds = answer["basis"][0]["seeds"]
    if answer["claims_for"] == "recipes":
        lines = [
            "## Verdict\n",
            f"Claims about **the strategies** (training recipes): {min(seeds.values())} or more seeds each, so "
            "every statement covers another training run and another draw of test images.\n",
            f"- **Best: {best}**, mean test top-1 {top1:.4f} over {seeds[best]} seeds.",
            *status_lines(answer, best),
        ]
    else:
        single = [name for name, count in seeds.items() if count < 2]
        lines = [
            "## Verdict\n",
            "Claims about **these trained networks**, not the strategies: "
            + (
                "one seed per strategy, so another seed could reorder strategies closer than the seed-to-seed spread, "
                "which one seed cannot measure.\n"
                if len(single) == len(seeds)
                else f"{', '.join(single)} had one seed, so the comparison holds for the networks trained.\n"
            ),
            f"- **Best network: {best}'s**, test top-1 {top1:.4f}.",
            *status_lines(answer, f"{best}'s"),
        ]
    lines.append(cheapest_line(answer))
    lines += [line for line in [sensitivity_line(answer)] if line]
    if answer["claims_for"] != "recipes":
        lines.append(recipe_requirement(answer))
    if answer["caveats"]:
        lines.append("- Caveats:")
        lines += [f"  - {caveat}" for caveat in answer["caveats"]]
    return "\n".join(lines) + "\n"


def write_verdict(params: Params, results: list[StrategyResult], correct: dict, cost_rows: list[dict]) -> str:
    """Write plots/verdict.json; return report.md's Verdict section."""
    answer = verdict(params, results, correct, cost_rows)
    write_json(VERDICT_PATH, answer)
    return verdict_section(answer)
