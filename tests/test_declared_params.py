"""Each stage reads exactly the params keys it declares in dvc.yaml: none undeclared, none unused.

Every config dataclass is instrumented to record which leaf values a stage reads, by their
params.yaml key path; each stage then runs for real on small synthetic data. The tests share one
project folder, whose fixtures first run the stages a test's stage needs, so each test runs alone.
"""

import dataclasses
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from stages import download, plots, prepare, train, weights
from tests.support.project import merge, params_tree, write_params
from transfer import config, paths
from transfer.sources.synthetic_folder import SyntheticFolder, write_synthetic_folder

DVC_STAGES = yaml.safe_load((paths.PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
CONFIG_CLASSES = [
    value for value in vars(config).values() if dataclasses.is_dataclass(value) and isinstance(value, type)
]
SMALL_RUN = {
    # One pass an epoch at the smaller size (a floor of 1 step): the reads, not the training, are under test.
    "data": {"val_size": 100, "synthetic": {"train_size": 400, "test_size": 100}, "subset_min_steps": 1},
    "strategy": {"epochs": 1},
}
STRATEGIES = list(params_tree()["strategies"])


def declared_params(stage: str, strategy: str = "") -> set[str]:
    """The params keys dvc.yaml declares for a stage (foreach's ${key}, matrix's ${item.strategy} resolved)."""
    body = DVC_STAGES[stage].get("do", DVC_STAGES[stage])
    return {key.replace("${key}", strategy).replace("${item.strategy}", strategy) for key in body.get("params", [])}


def key_paths(params: config.Params) -> dict[int, str]:
    """id of each config object in the tree -> its params.yaml key path ('' for the root)."""
    found = {id(params): ""}

    def visit(node: object, path: str) -> None:
        for field in dataclasses.fields(node):
            value = getattr(node, field.name)
            if dataclasses.is_dataclass(value):
                # A strategy's training settings are `strategy`, with that entry's overrides merged in.
                child = "strategy" if field.name == "training" else f"{path}.{field.name}".lstrip(".")
                found[id(value)] = child
                visit(value, child)

    visit(params, "")
    for name, strategy in params.strategies.items():
        found[id(strategy)] = f"strategies.{name}"
        found[id(strategy.training)] = "strategy"
        visit(strategy, f"strategies.{name}")
    return found


@contextmanager
def recording_reads(stage_module) -> Iterator[set[str]]:
    """Record the key path of every leaf value read from params loaded by stage_module."""
    reads: set[str] = set()
    paths_by_id: dict[int, str] = {}
    real_load = stage_module.load_params

    def load_and_register(*arguments, **keywords) -> config.Params:
        params = real_load(*arguments, **keywords)
        paths_by_id.update(key_paths(params))
        return params

    def recording_getattribute(self, name):
        value = object.__getattribute__(self, name)
        path = paths_by_id.get(id(self))
        is_field = name in {field.name for field in dataclasses.fields(type(self))}
        if path is not None and is_field and not dataclasses.is_dataclass(value) and not isinstance(value, dict):
            reads.add(f"{path}.{name}".lstrip("."))
        return value

    stage_module.load_params = load_and_register
    for cls in CONFIG_CLASSES:
        cls.__getattribute__ = recording_getattribute
    try:
        yield reads
    finally:
        stage_module.load_params = real_load
        for cls in CONFIG_CLASSES:
            del cls.__getattribute__


def covered(read: str, declared: set[str]) -> bool:
    """True when a declared key is the read key or one of its parents."""
    return any(read == key or read.startswith(f"{key}.") for key in declared)


def assert_reads_match(reads: set[str], declared: set[str]) -> None:
    """No read outside the declared keys, and every declared key read at least once."""
    undeclared = {read for read in reads if not covered(read, declared)}
    unused = {key for key in declared if not any(covered(read, {key}) for read in reads)}
    assert not undeclared, f"reads params not declared in dvc.yaml: {sorted(undeclared)}"
    assert not unused, f"declares params it never reads: {sorted(unused)}"


def write_small_params(project: Path, **changes: dict) -> None:
    """The test params for a tiny synthetic run, with the given section changes."""
    write_params(project, params_tree(merge(SMALL_RUN, changes)))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A folder with params for a tiny synthetic run and the data and weights the train stage reads.

    Stages run in-process with it as cwd.
    """
    root = tmp_path_factory.mktemp("project")
    write_small_params(root)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(root)
        for stage_module in (download, prepare, weights):
            stage_module.main([])
    return root


@pytest.fixture(scope="module")
def train_reads(project) -> dict[str, set[str]]:
    """The params keys each strategy's train stage read, by strategy; leaves every strategy's results."""
    reads = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        for strategy in STRATEGIES:
            reads[strategy] = run_recorded(train, project, monkeypatch, lambda name=strategy: train.train(name))
    return reads


# Images per class of the smaller training set the train_subset stages read: the small run's split has ~3 a class.
SUBSET_SIZE = 1


@pytest.fixture(scope="module")
def subset_reads(project, train_reads) -> dict[str, set[str]]:
    """The params keys each strategy's train_subset stage read, by strategy (after train_reads: no shared state)."""
    reads = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        for strategy in STRATEGIES:
            run = lambda name=strategy: train.train(name, SUBSET_SIZE)  # noqa: E731
            reads[strategy] = run_recorded(train, project, monkeypatch, run)
    return reads


def run_recorded(stage_module, project: Path, monkeypatch, run_stage=None) -> set[str]:
    """Run a stage in-process in project (main() with no arguments, or run_stage); return the params keys read."""
    monkeypatch.chdir(project)
    with recording_reads(stage_module) as reads:
        if run_stage is None:
            stage_module.main([])  # [] rather than None: argparse must not read pytest's own command line
        else:
            run_stage()
    return reads


@pytest.mark.pipeline
def test_download_reads_what_it_declares(project, monkeypatch):
    reads = run_recorded(download, project, monkeypatch)  # synthetic
    archive_copy = project / "copy.tar.gz"
    shutil.copy(project / paths.ARCHIVE_PATH, archive_copy)
    md5 = subprocess.run(["md5sum", str(archive_copy)], capture_output=True, text=True, check=True).stdout.split()[0]
    write_small_params(project, data={"source": str(archive_copy), "md5": md5})
    try:
        reads |= run_recorded(download, project, monkeypatch)  # a local file, checked against data.md5
    finally:
        write_small_params(project)
    assert_reads_match(reads, declared_params("download"))


@pytest.mark.pipeline
def test_prepare_reads_what_it_declares(project, monkeypatch):
    reads = run_recorded(prepare, project, monkeypatch)  # the synthetic CIFAR-100 archive
    prepared = (project / paths.PREPARED_PATH).read_bytes()
    folder = write_synthetic_folder(project / "images", SyntheticFolder(train_per_class=8))
    folder_data = {"dataset": "folder", "folder": str(folder), "stored_size": 40, "test_size": 6, "val_size": 6}
    write_small_params(project, data={**folder_data, "image_size": 40})
    try:
        reads |= run_recorded(prepare, project, monkeypatch)  # a folder dataset reads its own keys
    finally:
        write_small_params(project)
        (project / paths.PREPARED_PATH).write_bytes(prepared)  # what the other tests' stages read
    assert_reads_match(reads, declared_params("prepare"))


@pytest.mark.pipeline
def test_weights_reads_what_it_declares(project, monkeypatch):
    reads = run_recorded(weights, project, monkeypatch)  # random
    weights_copy = project / "copy.pth"
    shutil.copy(project / paths.PRETRAINED_PATH, weights_copy)
    write_small_params(project, model={"weights": str(weights_copy)})
    try:
        reads |= run_recorded(weights, project, monkeypatch)  # a local file
    finally:
        write_small_params(project)
    assert_reads_match(reads, declared_params("weights"))


@pytest.mark.pipeline
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_train_reads_what_it_declares(train_reads, strategy):
    assert_reads_match(train_reads[strategy], declared_params("train", strategy))


@pytest.mark.pipeline
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_train_subset_reads_what_it_declares(subset_reads, strategy):
    assert_reads_match(subset_reads[strategy], declared_params("train_subset", strategy))


@pytest.mark.pipeline
def test_plots_reads_what_it_declares(project, train_reads, monkeypatch):
    reads = run_recorded(plots, project, monkeypatch)
    assert_reads_match(reads, declared_params("plots"))


def test_recording_catches_an_undeclared_read():
    with pytest.raises(AssertionError, match=r"not declared in dvc.yaml: \['data.val_size'\]"):
        assert_reads_match({"data.split_seed", "data.val_size"}, {"data.split_seed"})
    with pytest.raises(AssertionError, match=r"never reads: \['model.head'\]"):
        assert_reads_match({"data.split_seed"}, {"data.split_seed", "model.head"})
