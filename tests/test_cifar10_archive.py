"""The CIFAR-10 archive: the synthetic stand-in, the reader, and an archive of the other format given by mistake."""

import tarfile
from pathlib import Path

import numpy as np
import pytest

from tests.support.project import copy_project, params_tree
from tests.test_failures import Project, assert_left_nothing, error_line
from transfer import paths
from transfer.config import parse_params
from transfer.datasets.cifar_archive import read_archive
from transfer.datasets.cifar_format import (
    ARCHIVE_NAME,
    CIFAR10_ARCHIVE_DIR,
    CIFAR10_ARCHIVE_NAME,
    CIFAR10_META_MEMBER,
    CIFAR10_NUM_CLASSES,
    CIFAR10_README_MEMBER,
    CIFAR10_TEST_MEMBER,
    CIFAR10_TRAIN_MEMBERS,
    IMAGE_SHAPE,
)
from transfer.datasets.splitting import prepared_arrays
from transfer.errors import UserError
from transfer.sources.synthetic_archive import write_synthetic_archive, write_synthetic_cifar10_archive

TRAIN_SIZE = 103  # images: not a multiple of the five batches, so the batches differ in size
TEST_SIZE = 30
SEED = 3


@pytest.fixture(scope="module")
def cifar10_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("raw10") / CIFAR10_ARCHIVE_NAME
    write_synthetic_cifar10_archive(path, train_size=TRAIN_SIZE, test_size=TEST_SIZE, seed=SEED)
    return path


@pytest.fixture(scope="module")
def cifar100_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("raw100") / ARCHIVE_NAME
    write_synthetic_archive(path, train_size=200, test_size=100, seed=SEED)
    return path


def test_synthetic_archive_has_the_real_members(cifar10_path: Path) -> None:
    with tarfile.open(cifar10_path, "r:gz") as tar:
        names = tar.getnames()
    expected = [CIFAR10_ARCHIVE_DIR, CIFAR10_META_MEMBER, CIFAR10_README_MEMBER, *CIFAR10_TRAIN_MEMBERS]
    assert names == [*expected, CIFAR10_TEST_MEMBER]


def test_round_trip_gives_ten_classes_and_no_superclasses(cifar10_path: Path) -> None:
    archive = read_archive(cifar10_path, "cifar10")
    for split, size in ((archive.train, TRAIN_SIZE), (archive.test, TEST_SIZE)):
        assert split.images.shape == (size, *IMAGE_SHAPE) and split.images.dtype == np.uint8
        assert split.fine_labels.dtype == np.int64 and split.coarse_labels is None
        counts = np.bincount(split.fine_labels, minlength=CIFAR10_NUM_CLASSES)
        assert counts.max() - counts.min() <= 1 and counts.sum() == size
    assert archive.fine_label_names == tuple(f"class_{label:02d}" for label in range(CIFAR10_NUM_CLASSES))
    assert archive.coarse_label_names == ()


def test_same_seed_gives_same_bytes(cifar10_path: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.tar.gz"
    write_synthetic_cifar10_archive(again, train_size=TRAIN_SIZE, test_size=TEST_SIZE, seed=SEED)
    assert again.read_bytes() == cifar10_path.read_bytes()


def test_torchvision_cifar10_decodes_it_like_read_archive(
    cifar10_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torchvision_cifar = pytest.importorskip("torchvision.datasets.cifar")
    with tarfile.open(cifar10_path, "r:gz") as tar:
        tar.extractall(tmp_path, filter="data")
    monkeypatch.setattr(torchvision_cifar, "check_integrity", lambda *args, **kwargs: True)
    archive = read_archive(cifar10_path, "cifar10")
    for train, split in ((True, archive.train), (False, archive.test)):
        dataset = torchvision_cifar.CIFAR10(str(tmp_path), train=train, download=False)
        np.testing.assert_array_equal(dataset.data, split.images)
        np.testing.assert_array_equal(np.asarray(dataset.targets), split.fine_labels)
        assert tuple(dataset.classes) == archive.fine_label_names


def test_prepared_arrays_map_every_class_to_no_superclass(cifar10_path: Path) -> None:
    config = parse_params(params_tree({"data": {"dataset": "cifar10", "val_size": 20}})).data
    arrays = prepared_arrays(read_archive(cifar10_path, "cifar10"), config)
    assert len(arrays["train_labels"]) + len(arrays["val_labels"]) == TRAIN_SIZE and len(arrays["val_labels"]) == 20
    np.testing.assert_array_equal(arrays["fine_to_coarse"], np.full(CIFAR10_NUM_CLASSES, -1))
    assert arrays["coarse_class_names"].shape == (0,) and len(arrays["class_names"]) == CIFAR10_NUM_CLASSES


@pytest.mark.parametrize(
    ("given", "dataset", "looks_like"), [("cifar10", "cifar100", "CIFAR-10"), ("cifar100", "cifar10", "CIFAR-100")]
)
def test_archive_of_the_other_format_says_which_it_looks_like(
    given: str, dataset: str, looks_like: str, cifar10_path: Path, cifar100_path: Path
) -> None:
    path = cifar10_path if given == "cifar10" else cifar100_path
    with pytest.raises(UserError) as raised:
        read_archive(path, dataset)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    assert f"looks like a {looks_like} (" in message and f"data.dataset = {dataset}" in message
    assert f"set data.dataset: {given}" in message


@pytest.mark.parametrize("dataset", ["cifar100", "cifar10"])
def test_prepare_stage_on_the_other_format_exits_2_and_writes_nothing(
    dataset: str, cifar10_path: Path, cifar100_path: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    project = Project(copy_project(tmp_path / "project", params_tree({"data": {"dataset": dataset}})))
    archive = project.root / paths.archive_path(dataset)
    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.write_bytes((cifar100_path if dataset == "cifar10" else cifar10_path).read_bytes())
    # In this process (tests/test_failures.py checks the command line's exit status once per stage).
    assert "looks like a" in error_line(project.run_in_process("prepare", monkeypatch, capsys)[0])
    assert_left_nothing(project, paths.PREPARED_PATH)


def test_download_stage_writes_the_synthetic_cifar10_archive(tmp_path: Path, monkeypatch, capsys) -> None:
    synthetic = {"train_size": 50, "test_size": 20, "seed": 0}
    tree = params_tree({"data": {"dataset": "cifar10", "val_size": 10, "synthetic": synthetic}})
    project = Project(copy_project(tmp_path / "project", tree))
    assert project.run_in_process("download", monkeypatch, capsys)[0].returncode == 0
    expected = tmp_path / "expected.tar.gz"
    write_synthetic_cifar10_archive(expected, train_size=50, test_size=20, seed=0)
    assert (project.root / paths.archive_path("cifar10")).read_bytes() == expected.read_bytes()
    assert project.run_in_process("prepare", monkeypatch, capsys)[0].returncode == 0
    assert (project.root / paths.PREPARED_PATH).is_file()
