"""Each dataset kind and backbone through the real dvc commands: repro, plots, verdict, ONNX, predict.

The CIFAR-100 + ResNet18 default is covered by tests/test_pipeline_e2e.py; here a folder of the
user's images (with ResNet34) and CIFAR-10 (with ResNet50) run the same stages on tiny data.
"""

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from PIL import Image

from tests.support.project import PIPELINE_TIMEOUT_SECONDS, Repo, params_tree
from tests.test_pipeline_e2e import rendered_rows
from transfer import paths
from transfer.models.model_file import load_model_file
from transfer.report import layout
from transfer.sources.synthetic_folder import SyntheticFolder, class_colour, write_synthetic_folder

pytestmark = pytest.mark.pipeline  # every test here trains through a stage process or DVC

CLASSES = ("cat", "dog", "fox")
# One strategy that caches frozen features and one with two phases: the two training paths.
STRATEGIES = ("probe", "lpft")


def small_tree(data: dict, arch: str) -> dict:
    """The test params with data's changes, arch, one epoch per phase and STRATEGIES only."""
    tree = params_tree({"data": data, "model": {"arch": arch}})
    tree["strategy"]["epochs"] = 1
    tree["strategies"] = {name: tree["strategies"][name] for name in STRATEGIES}
    return tree


def assert_plots_and_verdict(repo: Repo, num_classes: int) -> None:
    """Every DVC plot draws every strategy, the verdict names one, and scores cover the data's classes."""
    shown = json.loads(repo.dvc("plots", "show", "--json"))
    assert "errors" not in shown, shown.get("errors")
    for plot_id, rows in rendered_rows(shown).items():
        assert {row["strategy"] for row in rows} == set(STRATEGIES), plot_id
    assert repo.read_json(layout.VERDICT_PATH)["best"] in STRATEGIES
    for name in STRATEGIES:
        assert "test_top1_coarse" not in repo.read_json(paths.metrics_path(name))  # no superclasses
        assert len(repo.read_json(paths.confusion_path(name))["counts"]) == num_classes


def predict(repo: Repo, strategy: str, image: Path) -> list[dict]:
    """stages.predict's --json records for one image."""
    result = subprocess.run(
        [sys.executable, "-m", "stages.predict", str(paths.model_path(strategy)), str(image), "--json"],
        cwd=repo.root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def ran_stages(output: str) -> set[str]:
    """The stages a `dvc repro` ran."""
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def out_of_date(status: str) -> set[str]:
    """The stages `dvc status` lists as changed."""
    return {line.rstrip(":") for line in status.splitlines() if line and not line.startswith(("\t", " "))}


def test_a_folder_of_images_runs_through_dvc_and_an_added_image_reruns_prepare_and_what_follows(tmp_path: Path):
    folder = write_synthetic_folder(tmp_path / "images", SyntheticFolder(CLASSES, train_per_class=20))
    data = {"dataset": "folder", "folder": str(folder), "stored_size": 40, "image_size": 48}
    repo = Repo.create(tmp_path / "repo", small_tree({**data, "val_size": 9, "test_size": 9}, "resnet34"))
    repo.dvc("repro", timeout=PIPELINE_TIMEOUT_SECONDS)
    assert_plots_and_verdict(repo, len(CLASSES))
    report = (repo.root / layout.REPORT_PATH).read_text()
    assert report.startswith(f"# ResNet34 on your images: which way to train it ({', '.join(STRATEGIES)})")
    assert "With 3 classes, top-5 is top-3" in report  # the column keeps its name; the report says what it is
    for name in STRATEGIES:
        model = load_model_file(repo.root / paths.model_path(name))
        assert model["class_names"] == list(CLASSES) and model["config"]["model"]["arch"] == "resnet34"
        assert model["normalization"]["stored_size"] == 40 and model["normalization"]["image_size"] == 48
        metadata = {prop.key: prop.value for prop in onnx.load(repo.root / paths.onnx_path(name)).metadata_props}
        assert json.loads(metadata["class_names"]) == list(CLASSES) and metadata["stored_size"] == "40"
    # predict labels a photo of any size with the folder's classes.
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (300, 200), tuple(int(value) for value in class_colour(1))).save(photo)
    (record,) = predict(repo, "probe", photo)
    assert {entry["class"] for entry in record["top5"]} == set(CLASSES)  # top-min(5, classes): each class once

    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "first run")
    Image.new("RGB", (64, 48), (10, 200, 30)).save(folder / "train" / "dog" / "added.png")
    assert out_of_date(repo.dvc("status")) == {"prepare"}
    # prepare reruns and writes new splits; then every train stage and plots (which reads the splits' labels)
    # are out of date (export too, once new models exist), while download and weights are not. DVC runs what
    # is out of date: training again here would test DVC, not the project, at twice this test's cost.
    assert "Running stage 'prepare'" in repo.dvc("repro", "prepare", timeout=PIPELINE_TIMEOUT_SECONDS)
    assert out_of_date(repo.dvc("status")) == {"plots", *(f"train@{name}" for name in STRATEGIES)}


def assert_trained_at_size(repo: Repo, size: int, num_classes: int) -> None:
    """Every strategy has a row of plots/data_budget.json at size, of size images per class, and a verdict there."""
    rows = [row for row in repo.read_json(layout.DATA_BUDGET_PATH) if row["size"] == str(size)]
    assert {row["strategy"] for row in rows} == set(STRATEGIES)
    for row in rows:
        assert row["n_train"] == size * num_classes and row["train_per_class"] == size
        assert row["test_top1_min"] <= row["test_top1"] <= row["test_top1_max"]
        assert row["status"] in {"best", "worse", "equivalent", "inconclusive"}
    assert str(size) in repo.read_json(layout.VERDICT_PATH)["best_at"]


# CIFAR-10 also runs the data budget (data.train_sizes): one pipeline for both, since each costs a download,
# a prepare, weights and every strategy's full-size training before its own checks.
@pytest.mark.parametrize("arch", ["resnet50"])
def test_cifar10_runs_through_dvc_and_at_a_smaller_size_an_added_size_runs_only_its_stages(tmp_path: Path, arch: str):
    synthetic = {"train_size": 120, "test_size": 40, "seed": 0}
    # 1 image per class: 10 images, one step of batch 64 a pass, so the floor of 3 steps makes the passes.
    data = {"dataset": "cifar10", "val_size": 20, "synthetic": synthetic, "train_sizes": [1], "subset_min_steps": 3}
    tree = small_tree(data, arch)
    # Scores and the report over seeds, still without superclasses; an lr search, run again at each size.
    tree["strategies"]["probe"] |= {"seeds": [0, 1], "lr": [0.05, 0.2]}
    repo = Repo.create(tmp_path / "repo", tree)
    output = repo.dvc("repro", timeout=PIPELINE_TIMEOUT_SECONDS)
    assert "superclass" not in output  # the stages' logs (train's included) name none
    assert (repo.root / paths.archive_path("cifar10")).is_file()
    assert_plots_and_verdict(repo, 10)  # the data-budget chart among the plots, with every strategy
    for name in STRATEGIES:
        assert 0 <= repo.read_json(paths.metrics_path(name))["test_top5"] <= 1
        assert repo.read_json(paths.confusion_path(name))["coarse_class_names"] == []
    report = (repo.root / layout.REPORT_PATH).read_text()
    assert report.startswith(f"# {arch.replace('resnet', 'ResNet')} on CIFAR-10: ")
    assert "superclass" not in report and "| test top-1 | test top-5 |" in report
    # The verdict names the dataset the synthetic images stand in for.
    assert "stand-in data: synthetic images, not CIFAR-10:" in report
    image = tmp_path / "photo.png"
    Image.new("RGB", (50, 70), (200, 40, 40)).save(image)
    (record,) = predict(repo, "lpft", image)  # the full-size model: export and predict ignore the sizes
    assert len(record["top5"]) == 5

    # The size's runs: the whole split's outputs under sizes/1/, its own lr search, seeds, budget and weights.
    assert_trained_at_size(repo, 1, 10)
    assert "## At your data size" in report and (repo.root / layout.DATA_BUDGET_FIGURE_PATH).exists()
    probe = paths.subset_run_name("probe", 1)
    assert [row["lr"] for row in repo.read_json(paths.lr_search_path(probe))] == [0.05, 0.2]  # searched again
    assert repo.read_json(paths.metrics_path(probe))["num_seeds"] == 2
    for name, passes in (("lpft", 2), ("probe", 3)):  # 1 step a pass; 2 and 1 epochs in all; a floor of 3
        provenance = repo.read_json(paths.provenance_path(paths.subset_run_name(name, 1)))
        assert (provenance["train_per_class"], provenance["passes_per_epoch"]) == (1, passes)
        assert (repo.root / paths.model_path(paths.subset_run_name(name, 1))).exists()

    # Adding a size: only its stages and the plots are out of date, and only they run.
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "sizes [1]")
    params_file = repo.root / paths.PARAMS_PATH
    params_file.write_text(params_file.read_text().replace("train_sizes:\n  - 1\n", "train_sizes:\n  - 1\n  - 2\n"))
    assert repo.params()["data"]["train_sizes"] == [1, 2]
    new_stages = {f"train_subset@{name}-2" for name in STRATEGIES}
    assert out_of_date(repo.dvc("status")) == new_stages | {"plots"}
    output = repo.dvc("repro", timeout=PIPELINE_TIMEOUT_SECONDS)
    assert ran_stages(output) == new_stages | {"plots"}, output
    for name in STRATEGIES:
        for finished in (f"train_subset@{name}-1", f"train@{name}", f"export@{name}"):
            assert f"Stage '{finished}' didn't change, skipping" in output
    assert_trained_at_size(repo, 2, 10)
    assert_plots_and_verdict(repo, 10)  # two sizes and the whole split in the chart, no error
