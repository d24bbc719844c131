"""The answer first: which strategy to use, which are tied with it, the cheapest of those, and how provisional it is.

plots/verdict.json (the project's one metrics file, so `dvc exp show` and `dvc metrics diff` show it per
experiment: the headline, every strategy's test top-1 and its spread over seeds beside the answer) and
report.md's opening section, from the same rules:
  - best: the strategy with the best mean test top-1 (ties: the first in params.yaml);
  - tied_with_best: the strategies whose top-1 difference from it is not significant after Holm's
    correction (plots/comparison.json);
  - cheapest_flops / cheapest_seconds: among best and those tied with it, the fewest training FLOPs and
    the fewest seconds per seed (plots/cost.json);
  - caveats: what in this run's config and results limits the answer.
"""

from transfer.atomic import write_json
from transfer.config import IMAGENET_WEIGHTS, Params
from transfer.report.layout import READABLE_DATASET_NAMES, VERDICT_PATH
from transfer.report.strategy_result import StrategyResult

PRETRAINING_RESOLUTION = 224  # px: torchvision's ImageNet weights were trained on 224x224 crops
# "Far below" pretraining: under half its side, a pretrained network sees objects at under a quarter of the
# area it learned them at (Touvron et al., NeurIPS 2019, "Fixing the train-test resolution discrepancy").
FAR_BELOW_FRACTION = 0.5
# The ImageNet stem (stride-2 conv, max-pool) shrinks its input 4x: below this side a from-scratch network
# is left 8x8 px after the stem at 32 px, where the CIFAR stem keeps 32x32 (He et al., CVPR 2016, section 4.2).
SMALL_IMAGE_SIDE = 64  # px


def tied_with(best: str, pairs: list[dict]) -> list[str]:
    """The strategies whose top-1 difference from best is not significant after correction, sorted."""
    return sorted(
        pair["b"] if pair["a"] == best else pair["a"]
        for pair in pairs
        if best in (pair["a"], pair["b"]) and not pair["significant"]
    )


def seed_caveat(results: list[StrategyResult]) -> str | None:
    """One seed: the answer is provisional; several: the measured seed spread, so a reader sees its size."""
    seeded = {result.strategy.name: result.metrics for result in results if result.metrics["num_seeds"] > 1}
    single = [result.strategy.name for result in results if result.metrics["num_seeds"] == 1]
    if not seeded:
        return (
            "provisional: one seed per strategy, so each comparison holds for these trained networks only; "
            "another seed could reorder close strategies (set strategy.seeds, e.g. [0, 1, 2])"
        )
    spread = ", ".join(f"{name} ±{100 * metrics['test_top1_std']:.2f}" for name, metrics in seeded.items())
    caveat = f"seed spread of test top-1 (sample sd, points): {spread}"
    if single:
        caveat += f"; {', '.join(single)} had one seed and borrow the other side's spread in comparisons"
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


def verdict(params: Params, results: list[StrategyResult], pairs: list[dict], cost_rows: list[dict]) -> dict:
    """plots/verdict.json's content: the rules of the module docstring applied to this run."""
    best = max(results, key=lambda result: result.metrics["test_top1"]).strategy.name  # first of equals
    tied = tied_with(best, pairs)
    contenders = [row for row in cost_rows if row["strategy"] in {best, *tied}]
    caveats = [caveat for caveat in [seed_caveat(results), tuning_caveat(results), *config_caveats(params)] if caveat]
    return {
        "best": best,
        "tied_with_best": ", ".join(tied),  # a string: `dvc exp show` shows it in one column
        "cheapest_flops": min(contenders, key=lambda row: row["train_flops"])["strategy"],
        "cheapest_seconds": min(contenders, key=lambda row: row["train_seconds"])["strategy"],
        "num_caveats": len(caveats),
        # A list: DVC shows no column for lists, and sentences would make `dvc exp show` unreadable.
        "caveats": caveats,
        # One column per strategy each (DVC flattens them to test_top1.<strategy>): the headline numbers.
        "test_top1": {result.strategy.name: result.metrics["test_top1"] for result in results},
        "test_top1_std": {result.strategy.name: result.metrics["test_top1_std"] for result in results},
    }


def verdict_section(answer: dict) -> str:
    """report.md's opening section, in words."""
    tied = answer["tied_with_best"]
    lines = [
        "## Verdict\n",
        f"- **Use {answer['best']}**: the best mean test top-1 ({answer['test_top1'][answer['best']]:.4f}).",
        f"- Not significantly different from it (top-1, Holm-corrected): {tied}."
        if tied
        else "- Every other strategy is significantly worse in top-1 (Holm-corrected).",
        f"- Cheapest of these: {answer['cheapest_flops']} in training FLOPs, "
        f"{answer['cheapest_seconds']} in seconds per seed.",
    ]
    if answer["caveats"]:
        lines.append("- Caveats:")
        lines += [f"  - {caveat}" for caveat in answer["caveats"]]
    return "\n".join(lines) + "\n"


def write_verdict(params: Params, results: list[StrategyResult], pairs: list[dict], cost_rows: list[dict]) -> str:
    """Write plots/verdict.json; return report.md's Verdict section."""
    answer = verdict(params, results, pairs, cost_rows)
    write_json(VERDICT_PATH, answer)
    return verdict_section(answer)
