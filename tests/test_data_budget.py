"""data.train_sizes: smaller training sets drawn as promised, their budget rule, and the pipeline that trains them.

The subsets come from the training split only, stratified, nested and seeded; each (strategy, size) is its own
DVC stage; plots/data_budget.json and the verdict per size follow the whole split's rules. The pipeline itself
(sizes as their own stages, an added size running only its own, the DVC chart) runs with CIFAR-10 in
tests/test_dataset_pipelines.py.
"""

import dataclasses
import json
import os
import sys

import numpy as np
import pytest

from benchmarks import data_budget_cost
from stages import download, plots, prepare, train
from tests.support.project import params_tree, write_params
from tests.support.training import run_context
from tests.support.verdict_runs import CLASSES, TRAIN_PER_CLASS, write_run
from transfer import paths
from transfer.config import parse_params
from transfer.errors import UserError, run_stage
from transfer.report import layout
from transfer.report.data_budget import SizeOutcome, crossover_sentence
from transfer.sources.synthetic_folder import SyntheticFolder, write_synthetic_folder
from transfer.training import runs
from transfer.training.prepared_data import PreparedData, load_prepared
from transfer.training.subset import passes_per_epoch, schedule_steps, subset_indices, training_subset

CLASS_NAMES = ("apple", "bear", "cloud")


def labels_with_counts(counts: list[int], seed: int = 0) -> np.ndarray:
    """A shuffled training split holding counts[c] images of class c."""
    labels = np.repeat(np.arange(len(counts)), counts)
    return np.random.default_rng(seed).permutation(labels)


def test_a_subset_is_stratified_nested_and_seeded_by_the_split_seed():
    labels = labels_with_counts([30, 40, 25])
    small, large = (subset_indices(labels, CLASS_NAMES, size, split_seed=0) for size in (5, 20))
    assert np.bincount(labels[small]).tolist() == [5, 5, 5]
    assert np.bincount(labels[large]).tolist() == [20, 20, 20]
    assert set(small) <= set(large)  # nested: a class's 5 images are among its 20
    assert list(small) == sorted(small)  # in training-split order
    assert np.array_equal(small, subset_indices(labels, CLASS_NAMES, 5, split_seed=0))
    assert not np.array_equal(small, subset_indices(labels, CLASS_NAMES, 5, split_seed=1))


def test_a_size_above_the_smallest_class_is_refused_naming_the_class_and_its_count():
    labels = labels_with_counts([30, 40, 25])
    with pytest.raises(UserError, match=r"26 images per class is more than class 'cloud' has .*\(25\)"):
        subset_indices(labels, CLASS_NAMES, 26, split_seed=0)
    assert len(subset_indices(labels, CLASS_NAMES, 25, split_seed=0)) == 75


SOURCES = {
    "cifar100": {"val_size": 100, "synthetic": {"train_size": 400, "test_size": 100}},  # 4 a class, superclasses
    "cifar10": {"dataset": "cifar10", "val_size": 20, "synthetic": {"train_size": 80, "test_size": 20}},
    "folder": {"dataset": "folder", "folder": "images", "stored_size": 32, "test_size": 6, "val_size": 6},
}


def prepared_by_the_stage(root, source: str) -> PreparedData:
    """What the download and prepare stages write for one source, run in-process in root."""
    if source == "folder":
        write_synthetic_folder(root / "images", SyntheticFolder(train_per_class=8))
    write_params(root, params_tree({"data": SOURCES[source]}))
    for stage_module in (download, prepare):
        stage_module.main([])
    return load_prepared(paths.PREPARED_PATH)


@pytest.mark.parametrize("source", list(SOURCES))
def test_subsets_of_each_sources_prepared_labels_keep_every_class_and_the_other_splits(source, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = prepared_by_the_stage(tmp_path, source)
    classes = len(data.class_names)
    small, large = (training_subset(data, size, split_seed=0) for size in (1, 2))
    for subset, size in ((small, 1), (large, 2)):
        assert np.bincount(subset.train_labels, minlength=classes).tolist() == [size] * classes
        assert len(subset.train_images) == size * classes
        # Validation, test, class names and superclasses (CIFAR-100's coarse labels) are the whole split's.
        for field in ("val_labels", "test_labels", "fine_to_coarse", "val_images", "test_images"):
            assert np.array_equal(getattr(subset, field), getattr(data, field))
        assert (subset.class_names, subset.coarse_class_names) == (data.class_names, data.coarse_class_names)
    assert {image.tobytes() for image in small.train_images} <= {image.tobytes() for image in large.train_images}


def test_a_class_without_training_images_is_left_out_of_every_size():
    # A folder class may hold test images only: it has nothing to draw, and the other classes give `size` each.
    labels = labels_with_counts([30, 0, 25])
    kept = subset_indices(labels, CLASS_NAMES, 10, split_seed=0)
    assert np.bincount(labels[kept], minlength=3).tolist() == [10, 0, 10]
    with pytest.raises(UserError, match=r"class 'cloud' has in the training split \(25\)"):
        subset_indices(labels, CLASS_NAMES, 26, split_seed=0)


def test_the_budget_rule_makes_each_epoch_enough_passes_for_the_minimum_steps():
    params = parse_params(params_tree())
    scratch, lpft = params.strategies["scratch"], params.strategies["lpft"]  # 2 epochs; phases of 1 and 1
    # 200 images at batch 64: 3 steps a pass, so 2 epochs of one pass are 6 steps; a floor of 20 needs 4 passes.
    assert schedule_steps(scratch, 200) == 6 and passes_per_epoch(scratch, 200, min_steps=20) == 4
    assert passes_per_epoch(lpft, 200, min_steps=20) == 4  # counted over both phases
    assert passes_per_epoch(scratch, 40, min_steps=20) == 10  # fewer images than a batch: one batch a pass
    assert passes_per_epoch(scratch, 2000, min_steps=20) == 1  # 62 steps already: the schedule as written


def random_prepared(num_classes: int, per_split: dict[str, int]) -> PreparedData:
    """PreparedData of random 32 px images, evenly labelled, with per_split[split] images each."""
    generator = np.random.default_rng(0)
    arrays = {}
    for split, count in per_split.items():
        arrays[f"{split}_images"] = generator.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = np.arange(count, dtype=np.int64) % num_classes
    names = tuple(f"class_{index}" for index in range(num_classes))
    return PreparedData(**arrays, class_names=names, fine_to_coarse=np.full(num_classes, -1), coarse_class_names=())


def test_an_epoch_of_several_passes_trains_each_and_validates_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the live history and checkpoints land here
    (tmp_path / paths.PREPARED_DIR).mkdir(parents=True)
    (tmp_path / paths.PREPARED_PATH).write_bytes(b"")  # hashed into the checkpoints' key only
    params = parse_params(params_tree({"strategy": {"epochs": 1}}))
    data = random_prepared(4, {"train": 64, "val": 16, "test": 16})  # one batch of 64: one step a pass
    one, _ = runs.train_seed(run_context(params, "scratch", data))
    three, _ = runs.train_seed(dataclasses.replace(run_context(params, "scratch", data), passes_per_epoch=3))
    assert len(three.history) == len(one.history) == 1  # as many epochs, so as many validations
    assert three.metrics["train_flops"] > one.metrics["train_flops"]
    assert three.history[0]["train_loss"] != one.history[0]["train_loss"]  # two more steps trained


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        ([10, "all"], r"data.train_sizes = \[10, 'all'\] is invalid: list only the smaller sizes.*e.g. \[10\]"),
        ([10, 10], r"data.train_sizes = \[10, 10\] repeats 10"),
        ([0], r"data.train_sizes\[0\] = 0 is invalid"),
        ("10", r"data.train_sizes = '10' is invalid: use a list"),
    ],
)
def test_bad_train_sizes_are_refused_in_one_line(sizes, message):
    with pytest.raises(UserError, match=message) as raised:
        parse_params(params_tree({"data": {"train_sizes": sizes}}))
    assert "\n" not in str(raised.value)


def train_stage_error(root, monkeypatch, capsys, *arguments: str) -> str:
    """stages.train's one error line (exit 2) for these arguments with root's params.yaml, run in this process."""
    monkeypatch.chdir(root)
    monkeypatch.setattr(sys, "argv", ["stages.train", *arguments])
    with pytest.raises(SystemExit) as exited:
        run_stage(train.main)
    lines = capsys.readouterr().err.splitlines()
    assert exited.value.code == 2 and len(lines) == 1, lines
    return lines[0]


def test_the_train_stage_of_an_all_in_the_sizes_says_what_to_write_instead(tmp_path, monkeypatch, capsys):
    # dvc.yaml's matrix makes train_subset@<strategy>-all of `[10, all]` and runs `python -m stages.train deep all`.
    write_params(tmp_path, params_tree({"data": {"train_sizes": [10, "all"]}}))
    assert train_stage_error(tmp_path, monkeypatch, capsys, "deep", "all") == (
        "error: data.train_sizes = [10, 'all'] is invalid: list only the smaller sizes, in images per class, e.g. "
        "[10]; the whole training split ('all') always trains, in train@<strategy>"
    )
    write_params(tmp_path, params_tree())
    message = train_stage_error(tmp_path, monkeypatch, capsys, "deep", "all")
    assert message.startswith("error: python -m stages.train: 'all' is not a number of images per class above 0")


def test_a_strategy_may_not_take_the_name_of_the_sizes_folder():
    tree = params_tree()
    tree["strategies"]["sizes"] = tree["strategies"].pop("deep")
    with pytest.raises(UserError, match="strategy name 'sizes' is reserved"):
        parse_params(tree)


def outcome(label: str, status: dict[str, str], seeds: int = 3) -> SizeOutcome:
    """A size's outcome with only what the crossover sentence reads: each strategy's status, its seeds."""
    per_class = 450 if label == "all" else int(label)
    best = next(name for name, value in status.items() if value == "best")
    answer = {
        "best": best,
        "status": status,
        "claims_for": "recipes" if seeds >= 2 else "networks",
        "seeds": dict.fromkeys(status, seeds),
    }
    return SizeOutcome(label, per_class, per_class * 100, [], {}, answer)


def test_the_crossover_sentence_names_where_the_best_strategy_changes():
    scratch_best = {"scratch": "best", "full": "worse"}
    full_best = {"scratch": "worse", "full": "best"}
    changes = [outcome("10", scratch_best), outcome("50", scratch_best), outcome("100", full_best)]
    assert crossover_sentence([*changes, outcome("all", full_best)]) == (
        "The best strategy changes with the training-set size: up to 50 images per class, scratch; "
        "from 100 images per class, full."
    )
    same = [outcome("10", full_best), outcome("all", {"scratch": "equivalent", "full": "best"})]
    assert crossover_sentence(same) == (
        "The best strategy does not change with the training-set size: full at every size (images per class: 10, all)."
    )


def test_the_crossover_sentence_claims_nothing_where_the_best_is_not_shown_apart():
    shown = {"scratch": "best", "full": "worse", "deep": "equivalent"}
    unshown = {"scratch": "inconclusive", "full": "best", "deep": "worse"}
    sentence = crossover_sentence([outcome("10", shown), outcome("100", unshown), outcome("all", shown)])
    # scratch is best where shown; at 100 full leads only by noise: no crossover is claimed there.
    assert sentence == (
        "The best strategy does not change with the training-set size: scratch (deep equivalent) at every size "
        "where it is shown apart (images per class: 10, all). At 100 images per class, full leads but is not "
        "shown apart from scratch (inconclusive), so no claim is made there."
    )
    crossing = [outcome("10", shown), outcome("100", unshown), outcome("all", {**unshown, "scratch": "worse"})]
    assert crossover_sentence(crossing).startswith(
        "The best strategy changes with the training-set size: up to 10 images per class, scratch (deep "
        "equivalent); from the whole training split (~450 per class), full. At 100 images per class, full leads"
    )
    nowhere = crossover_sentence([outcome("10", unshown), outcome("all", unshown)])
    assert nowhere == (
        "At no training-set size is the best strategy shown apart from the others (the leaders, each with an "
        "inconclusive rival: full at 10 images per class, full at the whole training split (~450 per class)), so "
        "these results name no crossover; more seeds or test images would narrow the intervals (docs/statistics.md)."
    )
    assert "tied" not in sentence + nowhere


def test_with_one_seed_the_crossover_sentence_speaks_of_the_trained_networks():
    sentence = crossover_sentence(
        [
            outcome("10", {"scratch": "best", "full": "worse"}, seeds=1),
            outcome("all", {"scratch": "worse", "full": "best"}, seeds=1),
        ]
    )
    assert sentence == (
        "Claims about these trained networks, not the strategies: scratch, full had one seed, so another seed could "
        "reorder strategies closer than the seed-to-seed spread, which one seed cannot measure. The best network "
        "changes with the training-set size: up to 10 images per class, scratch's; from the whole training split "
        "(~450 per class), full's."
    )


def made_up_correctness(accuracies: dict[str, float], seeds: int, seed: int) -> dict[str, np.ndarray]:
    """Each strategy's top-1 correctness (images, seeds) on 2,000 test images at about the given accuracy."""
    rng = np.random.default_rng(seed)
    return {name: rng.random((2000, seeds)) < accuracy for name, accuracy in accuracies.items()}


def run_plots_with_sizes(root, by_size: dict[str, dict[str, np.ndarray]], seeds: int) -> tuple[dict, list, str]:
    """The plots stage in root on made-up results at each size ('all': the whole split); verdict.json,
    data_budget.json and report.md."""
    root.mkdir(exist_ok=True)
    os.chdir(root)  # the caller's monkeypatch.chdir restores the working directory
    names = list(by_size["all"])
    tree = params_tree({"strategy": {"seeds": list(range(seeds))}})
    tree["data"]["train_sizes"] = [int(size) for size in by_size if size != "all"]
    tree["strategies"] = {name: {"pretrained": True, "train_layers": [], "augment": True} for name in names}
    write_params(root, tree)
    for size, correct in by_size.items():
        run_names = {name: name if size == "all" else paths.subset_run_name(name, int(size)) for name in names}
        write_run(root, {run_names[name]: right for name, right in correct.items()})
    plots.main([])
    read = lambda path: json.loads((root / path).read_text())  # noqa: E731
    return read(layout.VERDICT_PATH), read(layout.DATA_BUDGET_PATH), (root / layout.REPORT_PATH).read_text()


def test_the_verdict_per_size_uses_the_whole_splits_rule_and_words(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    whole_split = made_up_correctness({"full": 0.80, "scratch": 0.60, "deep": 0.62}, seeds=3, seed=2)
    without_sizes, _, _ = run_plots_with_sizes(tmp_path / "without", {"all": whole_split}, seeds=3)
    by_size = {"5": made_up_correctness({"full": 0.30, "scratch": 0.50, "deep": 0.31}, seeds=3, seed=1)}
    verdict, rows, report = run_plots_with_sizes(tmp_path, by_size | {"all": whole_split}, seeds=3)
    assert verdict["best_at"] == {"5": "scratch", "all": "full"} and verdict["best"] == "full"
    # One more key, best_at (a `dvc exp show` column per size); the statuses per size live in data_budget.json.
    assert set(verdict) == set(without_sizes) | {"best_at"}
    status = {(row["strategy"], row["size"]): row["status"] for row in rows}
    assert status == {
        ("full", "5"): "worse",
        ("scratch", "5"): "best",
        ("deep", "5"): "worse",
        ("full", "all"): "best",
        ("scratch", "all"): "worse",
        ("deep", "all"): "worse",
    }
    assert {row["n_train"] for row in rows if row["size"] == "5"} == {5 * CLASSES}
    assert {row["n_train"] for row in rows if row["size"] == "all"} == {TRAIN_PER_CLASS * CLASSES}
    assert (
        "The best strategy changes with the training-set size: up to 5 images per class, scratch; from the whole "
        f"training split (~{TRAIN_PER_CLASS} per class), full." in report
    )
    assert "tied_with_best" not in report + json.dumps(rows) + json.dumps(verdict)


def test_a_size_where_the_best_leads_by_noise_claims_no_crossover(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    equal = made_up_correctness({"full": 0.40, "scratch": 0.40}, seeds=1, seed=3)
    by_size = {"5": equal, "all": made_up_correctness({"full": 0.80, "scratch": 0.60}, seeds=1, seed=4)}
    verdict, rows, report = run_plots_with_sizes(tmp_path, by_size, seeds=1)
    at_five = {row["strategy"]: row["status"] for row in rows if row["size"] == "5"}
    assert sorted(at_five.values()) == ["best", "inconclusive"]
    leader = verdict["best_at"]["5"]
    other = next(name for name in at_five if name != leader)
    assert "Claims about these trained networks, not the strategies" in report
    assert (
        f"The best network does not change with the training-set size: full's at every size where it is shown apart "
        f"(images per class: all). At 5 images per class, {leader} leads but is not shown apart from {other} "
        "(inconclusive), so no claim is made there." in report
    )


def test_without_sizes_verdict_json_has_no_best_at_and_data_budget_json_the_whole_split(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    by_size = {"all": made_up_correctness({"full": 0.80, "scratch": 0.60}, seeds=2, seed=5)}
    verdict, rows, report = run_plots_with_sizes(tmp_path, by_size, seeds=2)
    assert "best_at" not in verdict
    assert [(row["strategy"], row["size"], row["status"]) for row in rows] == [
        ("full", "all", "best"),
        ("scratch", "all", "worse"),
    ]
    assert "## At your data size" not in report and not (tmp_path / layout.DATA_BUDGET_FIGURE_PATH).exists()


def test_the_cost_benchmark_counts_every_strategy_and_the_ratio(tmp_path, monkeypatch, capsys):
    write_params(tmp_path, params_tree())
    monkeypatch.chdir(tmp_path)
    data_budget_cost.main(["--sizes", "2", "5", "--train-images", "1000"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines[:-1]] == list(params_tree()["strategies"])
    assert lines[-1].startswith("every strategy: ratio ") and float(lines[-1].split()[-1]) > 1


def test_a_sizes_missing_results_name_its_own_stage_to_rerun():
    # comparison.py's refusals of a size's predictions say which stage writes them.
    assert paths.run_stage_name(paths.subset_run_name("deep", 10)) == "train_subset@deep-10"
    assert paths.run_stage_name("deep") == "train@deep"
