"""The plots stage on small made-up results: band fields, confusion rows, most-confused pairs, report,
and the real `dvc plots show` rendering every plot dvc.yaml declares."""

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from dvc_render.base import Renderer

from stages import plots
from tests.support.project import params_tree, write_params
from tests.support.verdict_runs import made_up_provenance, write_json_files
from transfer import paths
from transfer.atomic import save_npz
from transfer.errors import UserError
from transfer.report import layout, page
from transfer.statistics import paired_tests

ROOT = paths.PROJECT_ROOT
DVC = str(Path(sys.executable).parent / "dvc")
TEMPLATES_DIR = Path(".dvc/plots")  # where DVC finds custom templates named in dvc.yaml
DECLARED_PLOTS = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
# .dvc/plots/linear_band.json (x: epoch) and band_log_x.json (x: the training FLOPs spent, log scale)
BAND_TEMPLATES = ("linear_band", "band_log_x")
BAND_PLOT_IDS = {
    plot_id
    for entry in DECLARED_PLOTS
    if isinstance(entry, dict)
    for plot_id, body in entry.items()
    if body.get("template") in BAND_TEMPLATES
}
STRATEGIES = tuple(params_tree()["strategies"])  # the test params: made-up results for each
# Strategies with phases write a `phase` column the others lack, as the train stage does.
PHASED = {name for name, entry in params_tree()["strategies"].items() if "phases" in entry}
SEEDS = [0, 1]
EPOCHS = 3
CLASS_NAMES = [f"class_{index}" for index in range(10)]
FINE_TO_COARSE = [index // 5 for index in range(10)]  # two superclasses of five classes
# Off-diagonal cells of the known matrix: (actual, predicted) -> count. Largest first:
# 9, 8, then two 7s (tie: actual 1 before actual 6), 6, 5, 4, 3, 2, 2 (tie: actual 0 before 4), then 1s left out.
OFF_DIAGONAL = {
    (3, 5): 9,
    (2, 7): 8,
    (6, 1): 7,
    (1, 0): 7,
    (9, 8): 6,
    (8, 9): 5,
    (0, 4): 4,
    (5, 3): 3,
    (4, 2): 2,
    (0, 9): 2,
    (7, 6): 1,
    (9, 0): 1,
}
EXPECTED_PAIRS = [
    (3, 5, 9),
    (2, 7, 8),
    (1, 0, 7),
    (6, 1, 7),
    (9, 8, 6),
    (8, 9, 5),
    (0, 4, 4),
    (5, 3, 3),
    (0, 9, 2),
    (4, 2, 2),
]
DIAGONAL = 20  # correct predictions of each class


def known_counts() -> list[list[int]]:
    """10x10 counts[actual][predicted]: DIAGONAL on the diagonal, OFF_DIAGONAL elsewhere."""
    return [
        [DIAGONAL if actual == predicted else OFF_DIAGONAL.get((actual, predicted), 0) for predicted in range(10)]
        for actual in range(10)
    ]


def history(offset: float, phased: bool = False) -> list[dict]:
    """Per-epoch rows with every column's mean and a spread of 0.1 either side; phased: a phase column too."""
    rows = []
    for epoch in range(1, EPOCHS + 1):
        row = {"epoch": epoch, "lr": 0.1 / epoch} | ({"phase": 1 if epoch == 1 else 2} if phased else {})
        for column in ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5"):
            mean = offset + epoch / 10
            row |= {column: mean, f"{column}_min": mean - 0.1, f"{column}_max": mean + 0.1}
        rows.append(row)
    return rows


def metrics(index: int) -> dict:
    """metrics.json of strategy number index: test_top1 = 0.6 + index / 100 with std 0.0123."""
    figures = {
        "test_top1": 0.6 + index / 100,
        "test_top5": 0.9,
        "test_loss": 1.5,
        "test_top1_coarse": 0.75,
        "best_val_top1": 0.61,
        "best_epoch": 2.5,
    }
    result = {}
    for key, value in figures.items():
        result |= {key: value, f"{key}_std": 0.0123}
    searched = index == 0  # the first strategy tried two learning rates, the others one
    return result | {
        "trainable_params": 51300 * (index + 1),
        "total_params": 11227812,
        "train_flops": flops_by_epoch(index)[-1],
        "train_flops_by_epoch": flops_by_epoch(index),
        "tuning_flops": flops_by_epoch(index)[-1] if searched else 0,
        "lr_candidates": 2 if searched else 1,
        "num_seeds": len(SEEDS),
    }


def flops_by_epoch(index: int) -> list[int]:
    """Training FLOPs spent by the end of each epoch by strategy number index: (index + 1) 10^12 per epoch."""
    return [10**12 * (index + 1) * epoch for epoch in range(1, EPOCHS + 1)]


TEST_LABELS = np.arange(100) % len(CLASS_NAMES)  # 100 test images: test_top1 0.6 + index / 100 is a whole count


def write_predictions(root: Path) -> None:
    """The prepared test labels, and per strategy and seed predictions that score metrics(index)'s test_top1."""
    # The training labels too: plots/data_budget.json counts the whole split's training images from them.
    save_npz(root / paths.PREPARED_PATH, {"test_labels": TEST_LABELS, "train_labels": np.repeat(TEST_LABELS, 2)})
    others = (TEST_LABELS[:, None] + np.arange(1, 6)) % len(CLASS_NAMES)  # five classes, none the label
    for index, name in enumerate(STRATEGIES):
        top5 = others.copy()
        top5[: 60 + index, 0] = TEST_LABELS[: 60 + index]
        for seed in SEEDS:
            save_npz(root / paths.predictions_path(name, seed), {"top5": top5, "labels": TEST_LABELS})


def write_results(root: Path) -> None:
    """Made-up results/<strategy>/ files of the train stage's format for every strategy, and their predictions."""
    write_predictions(root)
    for index, name in enumerate(STRATEGIES):
        files = {
            paths.metrics_path(name): metrics(index),
            paths.history_path(name): history(index, name in PHASED),
            paths.confusion_path(name): {
                "class_names": CLASS_NAMES,
                "coarse_class_names": ["coarse_0", "coarse_1"],
                "fine_to_coarse": FINE_TO_COARSE,
                "seeds": SEEDS,
                "counts": known_counts(),
            },
            paths.timing_path(name): {
                "total_seconds": 240.0,
                "seconds_per_seed": 120.0,
                "seed_seconds": [110.0, 130.0],
                "tuning_seconds": 115.0 if index == 0 else 0.0,
                "device": "cpu",
            },
            paths.provenance_path(name): made_up_provenance(name, model_seed=1),
        }
        # Each seed's test top-1 (the band of plots/data_budget.json): one seed below the mean, the others above.
        for number, seed in enumerate(SEEDS):
            seed_top1 = metrics(index)["test_top1"] + (-0.01 if number == 0 else 0.01)
            files[paths.seed_dir(name, seed) / paths.METRICS_FILE] = {"test_top1": seed_top1}
        write_json_files(root, files)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A folder with the test params, made-up results and the plots stage's outputs."""
    root = tmp_path_factory.mktemp("plots_project")
    write_params(root, params_tree())
    write_results(root)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(root)
        plots.main([])
    return root


def read(project: Path, path: Path) -> object:
    """Parsed JSON file of the project."""
    return json.loads((project / path).read_text())


def test_one_epochs_file_holds_every_strategy_with_its_band(project):
    rows = read(project, layout.EPOCHS_PATH)
    for index, name in enumerate(STRATEGIES):
        expected = [
            {"strategy": name, "phase": 1, **row, "train_flops_spent": spent}
            for row, spent in zip(history(index, name in PHASED), flops_by_epoch(index), strict=True)
        ]
        assert [row for row in rows if row["strategy"] == name] == expected
    # Every row has the same keys: DVC draws nothing of a plot whose rows differ (a phase column in some).
    assert PHASED and len({tuple(row) for row in rows}) == 1
    for column in layout.EPOCH_FIGURES:
        assert all(row[f"{column}_min"] < row[column] < row[f"{column}_max"] for row in rows)


def test_final_scores_hold_mean_and_std(project):
    rows = read(project, layout.FINAL_SCORES_PATH)
    assert len(rows) == len(STRATEGIES) * len(layout.TEST_ACCURACIES)
    deep_top1 = next(row for row in rows if row["bar"] == "deep top-1")
    assert deep_top1["accuracy"] == pytest.approx(0.61) and deep_top1["accuracy_std"] == 0.0123


def test_confusion_rows_expand_every_count(project):
    counts = known_counts()
    all_rows = read(project, layout.CONFUSION_PATH)
    for name in STRATEGIES:
        rows = [row for row in all_rows if row["strategy"] == name]
        assert len(rows) == sum(map(sum, counts))
        tally = {}
        for row in rows:
            key = (CLASS_NAMES.index(row["actual"]), CLASS_NAMES.index(row["predicted"]))
            tally[key] = tally.get(key, 0) + 1
        assert tally == {(a, p): count for a, row in enumerate(counts) for p, count in enumerate(row) if count}


def test_most_confused_pairs_are_the_largest_off_diagonal_cells():
    confusion = {"class_names": CLASS_NAMES, "counts": known_counts()}
    pairs = page.most_confused_pairs(confusion)
    assert [(CLASS_NAMES.index(p.actual), CLASS_NAMES.index(p.predicted), p.count) for p in pairs] == EXPECTED_PAIRS
    row_total = DIAGONAL + OFF_DIAGONAL[(3, 5)]  # actual class 3 has no other mistakes
    assert pairs[0].share == pytest.approx(9 / row_total)


def test_report_shows_scores_figures_and_confusion(project):
    report = (project / layout.REPORT_PATH).read_text()
    assert not (project / paths.PLOTS_DIR / "summary.md").exists()
    for path in layout.figure_paths(list(STRATEGIES)):
        assert (project / path).stat().st_size > 0
        assert f"]({path.relative_to(layout.REPORT_PATH.parent).as_posix()})" in report, path
    assert "| deep | yes | layer4 + head | 0.6100 ± 0.0123 | 0.7500 ± 0.0123 |" in report
    assert "| 2.5 ± 0.0 | 102,600 | 2.0 | 2 |" in report  # best epoch, trainable params, minutes per seed, seeds
    assert report.count("| class_3 | class_5 | 9 | 31.0% |") == len(STRATEGIES)  # 9 of 29 images of class_3
    assert (
        report.count("| class_0 | class_9 |") == len(STRATEGIES) and "| class_9 | class_0 |" not in report
    )  # a count of 1: left out


def test_convergence_is_measured_against_one_target_for_every_strategy(project):
    rows = {row["strategy"]: row for row in read(project, paths.COST_PATH)}
    # history(index): val_top1 = index + epoch / 10, so the last strategy's best (epoch 3) sets the target,
    # and only it reaches 90% of that; the others' own bests are far lower and would "converge" by the old rule.
    best = len(STRATEGIES) - 1 + EPOCHS / 10
    assert {row["target_val_top1"] for row in rows.values()} == {round(0.9 * best, 6)}
    last = STRATEGIES[-1]
    assert (rows[last]["epoch_to_target"], rows[last]["train_flops_to_target"]) == (1, flops_by_epoch(len(rows) - 1)[0])
    assert all(rows[name]["epoch_to_target"] is None is rows[name]["train_flops_to_target"] for name in STRATEGIES[:-1])
    report = (project / layout.REPORT_PATH).read_text()
    assert report.count("| not reached | not reached |") == len(STRATEGIES) - 1
    # The lr search's extra run counts in the cost, beside one seed's run.
    first = rows[STRATEGIES[0]]
    assert (first["lr_candidates"], first["tuning_flops"], first["tuning_seconds"]) == (2, first["train_flops"], 115.0)


def test_unequal_tuning_is_a_caveat_of_the_verdict(project):
    (caveat,) = [text for text in read(project, layout.VERDICT_PATH)["caveats"] if text.startswith("unequal")]
    assert caveat.startswith(f"unequal tuning (learning rates tried: {STRATEGIES[0]} 2, {STRATEGIES[1]} 1,")


def test_a_missing_result_names_the_file(tmp_path, monkeypatch):
    write_params(tmp_path, params_tree())
    write_results(tmp_path)
    (tmp_path / paths.confusion_path("deep")).unlink()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"^results/deep/confusion.json is missing; run the train stages first"):
        plots.main([])


def test_results_of_an_older_train_stage_name_the_missing_key(tmp_path, monkeypatch):
    write_params(tmp_path, params_tree())
    write_results(tmp_path)
    single_run_history = [
        {key: value for key, value in row.items() if not key.endswith(("_min", "_max"))} for row in history(0)
    ]
    (tmp_path / paths.history_path("shallow")).write_text(json.dumps(single_run_history))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"^results/shallow/history.json has no 'train_loss_min'; .* dvc repro$"):
        plots.main([])


def run(command: list[str], cwd: Path) -> str:
    """Run a command; fail the test with its output if it fails."""
    environment = {**os.environ, "DVC_NO_ANALYTICS": "1"}  # no background reporting process
    result = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def dvc_repo(project, tmp_path_factory) -> Path:
    """A committed git + DVC repository with dvc.yaml's top-level plots, the custom templates and the stage's plots/."""
    root = tmp_path_factory.mktemp("dvc_repo")
    shutil.copytree(project / paths.PLOTS_DIR, root / paths.PLOTS_DIR)
    (root / "dvc.yaml").write_text(yaml.safe_dump({"plots": DECLARED_PLOTS}))
    run(["git", "init", "-q"], root)
    run([DVC, "init", "-q"], root)
    shutil.copytree(ROOT / TEMPLATES_DIR, root / TEMPLATES_DIR)
    shutil.copy(ROOT / ".dvc" / "config", root / ".dvc" / "config")  # plots.html_template: the offline page
    shutil.copytree(ROOT / "vendor", root / "vendor")
    run(["git", "add", "-A"], root)
    run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-qm", "plots"], root)
    return root


def band_plots(shown: dict) -> dict[str, dict]:
    """plot id -> filled vega-lite spec, of the plots drawn with the band template."""
    return {plot_id: entries[0]["content"] for plot_id, entries in shown["data"].items() if plot_id in BAND_PLOT_IDS}


def test_dvc_plots_show_renders_every_declared_plot(dvc_repo):
    run([DVC, "plots", "show", "-o", "html"], dvc_repo)
    html = (dvc_repo / "html" / "index.html").read_text()
    for entry in DECLARED_PLOTS:
        if isinstance(entry, dict):
            plot_id = next(iter(entry))
            assert re.search(rf'id ?= ?"{re.escape(Renderer.remove_special_chars(plot_id))}"', html), plot_id
            assert f'"text": "{plot_id}"' in html, plot_id  # its spec was filled: the title anchor holds the id
    # The figures directory entry: each PNG the stage drew, every strategy's confusion heatmap included.
    pngs = sorted((dvc_repo / layout.FIGURES_DIR).glob("*.png"))
    drawn = [*layout.figure_paths(list(STRATEGIES)), paths.COST_FIGURE_PATH, layout.FLOPS_FIGURE_PATH]
    assert [png.name for png in pngs] == sorted(path.name for path in drawn)
    copied = {path.name: path.read_bytes() for path in (dvc_repo / "html" / "static").iterdir()}
    assert copied == {"workspace_" + str(png.relative_to(dvc_repo)).replace("/", "_"): png.read_bytes() for png in pngs}


def test_dvc_draws_a_band_from_min_to_max(dvc_repo):
    shown = json.loads(run([DVC, "plots", "show", "--json"], dvc_repo))
    assert "errors" not in shown, shown.get("errors")
    specs = band_plots(shown)
    assert set(specs) == BAND_PLOT_IDS and len(specs) == len(layout.EPOCH_FIGURES) + 2  # + by FLOPs, by size
    for spec in specs.values():
        column = spec["layer"][-1]["encoding"]["y"]["field"]  # the mean's line
        band = spec["layer"][0]["encoding"]
        assert (band["y"]["field"], band["y2"]["field"]) == (f"{column}_min", f"{column}_max")
        rows = spec["data"]["values"]
        assert {row["strategy"] for row in rows} == set(STRATEGIES)
        assert all(row[f"{column}_min"] < row[column] < row[f"{column}_max"] for row in rows)


def test_dvc_plots_diff_keeps_every_revision_and_strategy(dvc_repo):
    shown = json.loads(run([DVC, "plots", "diff", "HEAD", "--json"], dvc_repo))
    assert "errors" not in shown, shown.get("errors")
    for spec in band_plots(shown).values():
        series = {(row["rev"], row["strategy"]) for row in spec["data"]["values"]}
        assert series == {(rev, name) for rev in ("HEAD", "workspace") for name in STRATEGIES}
        assert (
            spec["layer"][-2]["encoding"]["strokeDash"]["field"] == "rev"
        )  # revisions dashed apart, strategies coloured


def test_strategies_with_several_seeds_are_compared_over_seeds_and_images(project):
    pairs = read(project, paths.COMPARISON_PATH)["pairs"]
    # Every unordered pair once, each named in alphabetical order, the pairs sorted.
    assert [(pair["a"], pair["b"]) for pair in pairs] == list(itertools.combinations(sorted(STRATEGIES), 2))
    assert all(pair["test"] == paired_tests.SEED_IMAGE_T and pair["n_seeds"] == [2, 2] for pair in pairs)
    (deep_vs_scratch,) = [pair for pair in pairs if (pair["a"], pair["b"]) == ("deep", "scratch")]
    assert deep_vs_scratch["top1_diff"] == -0.01  # deep 0.61 - scratch 0.62: the two metrics.json means
    assert [row["strategy"] for row in read(project, paths.COST_PATH)] == list(STRATEGIES)
    assert "| deep | scratch | -1.0 |" in (project / layout.REPORT_PATH).read_text()


def test_a_history_with_a_column_another_lacks_is_refused(tmp_path, monkeypatch):
    write_params(tmp_path, params_tree())
    write_results(tmp_path)
    (tmp_path / paths.history_path("deep")).write_text(json.dumps([row | {"extra": 0} for row in history(1)]))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"^results/shallow/history.json has no column 'extra', which results/deep/"):
        plots.main([])
    assert not (tmp_path / paths.PLOTS_DIR).exists()  # nothing written


def test_the_verdict_opens_the_report(project):
    answer = read(project, layout.VERDICT_PATH)
    # Made-up results: the last strategy has the best top-1 (0.6 + index / 100); on 100 images its lead of at most
    # 4 images is neither shown nor within the 1-point margin, so the others are inconclusive and the cheap pick is
    # the best itself (only best and equivalent compete).
    best = STRATEGIES[-1]
    assert answer["best"] == best and answer["claims_for"] == "recipes"  # two seeds each
    assert answer["status"] == {name: "best" if name == best else "inconclusive" for name in STRATEGIES}
    # The headline: every strategy's mean test top-1 and its spread, one value each (a column in dvc exp show).
    assert answer["test_top1"] == {name: pytest.approx(0.6 + index / 100) for index, name in enumerate(STRATEGIES)}
    assert answer["test_top1_std"] == dict.fromkeys(STRATEGIES, 0.0123)
    assert (answer["cheapest_flops"], answer["cheapest_seconds"]) == (best, best)
    caveats = answer["caveats"]
    assert answer["num_caveats"] == len(caveats) == 6
    assert caveats[0].startswith("seed spread of test top-1 (sample sd, points): shallow ±1.23, deep ±1.23")
    assert caveats[1].startswith("unequal tuning")  # the first strategy tried two rates
    assert caveats[2].startswith("stand-in data") and caveats[3].startswith("stand-in backbone weights (random)")
    pretrained = [name for name, entry in params_tree()["strategies"].items() if entry["pretrained"]]
    assert caveats[4].startswith(f"{', '.join(pretrained)} run at 32 px, far below the 224 px")
    assert caveats[5].startswith("scratch trains from scratch with the ImageNet stem at 32 px")
    report = (project / layout.REPORT_PATH).read_text()
    assert report.split("\n\n")[1] == "## Verdict"  # right under the title
    assert f"- **Best: {best}**, mean test top-1 {answer['test_top1'][best]:.4f} over 2 seeds." in report
    assert report.index("## Verdict") < report.index("## Final scores")


@pytest.mark.parametrize("num_classes", [10, 100])
def test_confusion_labels_are_legible_and_never_overlap(num_classes):
    from transfer.report.figures import MIN_LABEL_POINTS, draw_confusion_figure

    names = [f"class_{index:02d}" for index in range(num_classes)]
    confusion = {"counts": np.eye(num_classes).tolist(), "class_names": names, "fine_to_coarse": [-1] * num_classes}
    figure = draw_confusion_figure("probe", confusion)
    figure.canvas.draw()
    labels = figure.axes[0].get_yticklabels()
    assert [label.get_text() for label in labels] == names
    # At 10 classes the cells are large: the labels grow with them, well above the 100-class minimum.
    assert labels[0].get_fontsize() >= (8 if num_classes <= 10 else MIN_LABEL_POINTS)
    boxes = sorted((label.get_window_extent() for label in labels), key=lambda box: box.y0)
    assert all(lower.y1 <= upper.y0 for lower, upper in itertools.pairwise(boxes))
    figure.clf()


@pytest.mark.parametrize("flops", [[1.2e12, 1.8e12], [1.2e12, 2.9e12], [1e11, 3e12], [4e9, 5e13]])
def test_flops_axis_has_a_few_labels_that_never_overlap(flops):
    import matplotlib.pyplot as plt

    from transfer.report.figures import scale_flops_axis

    figure, axes = plt.subplots(figsize=(6, 4))  # the size of the cost and FLOPs figures
    axes.plot(flops, [0.5] * len(flops), "o")
    scale_flops_axis(axes, flops)
    figure.canvas.draw()
    low, high = axes.get_xlim()
    labels = [
        label
        for label in axes.get_xticklabels(which="both")
        if label.get_text() and low <= label.get_position()[0] <= high
    ]
    assert len(labels) >= 2, [label.get_text() for label in labels]  # a reader can tell the scale
    boxes = sorted((label.get_window_extent() for label in labels), key=lambda box: box.x0)
    assert all(left.x1 <= right.x0 for left, right in itertools.pairwise(boxes)), [label.get_text() for label in labels]
    plt.close(figure)
