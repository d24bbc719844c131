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
from tests.test_pipeline_e2e import assert_ran_only, rendered_rows
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
    assert "prepare" in repo.dvc("status") and "up to date" in repo.dvc("status", "download", "weights")
    rerun = repo.dvc("repro", timeout=PIPELINE_TIMEOUT_SECONDS)
    assert_ran_only(rerun, {"prepare", "plots", *(f"train@{name}" for name in STRATEGIES)}, list(STRATEGIES))


@pytest.mark.parametrize("arch", ["resnet50"])
def test_cifar10_runs_through_dvc(tmp_path: Path, arch: str):
    synthetic = {"train_size": 120, "test_size": 40, "seed": 0}
    data = {"dataset": "cifar10", "val_size": 20, "synthetic": synthetic}
    tree = small_tree(data, arch)
    tree["strategies"]["probe"]["seeds"] = [0, 1]  # scores and the report over seeds, still without superclasses
    repo = Repo.create(tmp_path / "repo", tree)
    output = repo.dvc("repro", timeout=PIPELINE_TIMEOUT_SECONDS)
    assert "superclass" not in output  # the stages' logs (train's included) name none
    assert (repo.root / paths.archive_path("cifar10")).is_file()
    assert_plots_and_verdict(repo, 10)
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
    (record,) = predict(repo, "lpft", image)
    assert len(record["top5"]) == 5
