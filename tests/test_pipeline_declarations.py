"""dvc.yaml declares what the stages really read and write: code deps, paths, plots."""

import ast
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from transfer import paths
from transfer.models import artifacts
from transfer.report import layout

ROOT = paths.PROJECT_ROOT
DVC_YAML = yaml.safe_load((ROOT / "dvc.yaml").read_text())
STAGES = DVC_YAML["stages"]


def stage_body(name: str) -> dict:
    """A stage's definition (the `do:` body for a foreach stage)."""
    return STAGES[name].get("do", STAGES[name])


PROJECT_ROOTS = ("stages", "transfer")
# Packages whose modules a stage may import: stages, transfer and every sub-package of transfer.
PROJECT_PACKAGES = (
    "stages",
    "transfer",
    *(f"transfer.{d.name}" for d in (ROOT / "transfer").iterdir() if (d / "__init__.py").exists()),
)


def module_file(module: str) -> Path:
    """The source file of a project module: a package's __init__.py or a plain module's .py."""
    as_path = ROOT / module.replace(".", "/")
    return as_path / "__init__.py" if as_path.is_dir() else as_path.with_suffix(".py")


def imported_project_modules(module: str) -> set[str]:
    """Every stages.* and transfer.* module that module imports, directly or through others, itself included.

    Importing a submodule runs its packages' __init__.py too, so those count as imported.
    """
    found, pending = set(), [module]
    while pending:
        current = pending.pop()
        if current in found:
            continue
        found.add(current)
        parts = current.split(".")
        pending.extend(".".join(parts[:length]) for length in range(1, len(parts)))  # parent packages
        tree = ast.parse(module_file(current).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in PROJECT_PACKAGES:
                # `from transfer import paths` imports a module; `from transfer.report import x` may too.
                pending.extend(
                    f"{node.module}.{alias.name}"
                    for alias in node.names
                    if module_file(f"{node.module}.{alias.name}").exists()
                )
                pending.append(node.module)
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PROJECT_ROOTS:
                pending.append(node.module)
            elif isinstance(node, ast.Import):
                pending.extend(alias.name for alias in node.names if alias.name.split(".")[0] in PROJECT_ROOTS)
    return found


def declared_code(stage: str) -> set[str]:
    """The project source files a stage lists in its deps; a folder dep stands for every module in it.

    A folder is declared where one stage imports all of its modules (transfer/training, transfer/report,
    transfer/statistics): the equality below then still holds, so a module of that folder that the stage stopped
    importing would fail it (an edit of it would rerun the stage for nothing).
    """
    declared = set()
    for dep in stage_body(stage)["deps"]:
        if dep.split("/")[0] not in PROJECT_ROOTS:
            continue
        if (ROOT / dep).is_dir():
            declared |= {str(path.relative_to(ROOT)) for path in (ROOT / dep).rglob("*.py")}
        else:
            declared.add(dep)
    return declared


@pytest.mark.parametrize("stage", list(STAGES))
def test_stage_declares_exactly_the_code_it_imports(stage: str):
    module = stage_body(stage)["cmd"].split()[2]  # "python -m stages.<name> ..."
    expected = {str(module_file(name).relative_to(ROOT)) for name in imported_project_modules(module)}
    assert declared_code(stage) == expected


def test_stage_outputs_are_the_paths_the_code_writes():
    assert stage_body("download")["outs"] == [str(paths.RAW_DIR)]
    assert stage_body("prepare")["outs"] == [str(paths.PREPARED_PATH)]
    assert stage_body("prepare")["deps"][-2:] == [str(paths.RAW_DIR), "${data.folder}"]
    assert stage_body("weights")["outs"] == [str(paths.PRETRAINED_PATH)]
    train = stage_body("train")
    assert {str(paths.PREPARED_PATH), str(paths.PRETRAINED_PATH)} <= set(train["deps"])
    declared_train_outputs = {next(iter(out)) if isinstance(out, dict) else out for out in train["outs"]}
    # One metrics file in the whole pipeline, the verdict's headline: `dvc exp show` stays readable.
    assert [name for name, body in DVC_YAML["stages"].items() if "metrics" in body] == ["plots"]
    key = "${key}"
    assert declared_train_outputs == {
        str(paths.model_path(key)),
        str(paths.history_path(key)),
        str(paths.metrics_path(key)),
        str(paths.timing_path(key)),
        str(paths.provenance_path(key)),
        str(paths.confusion_path(key)),
        str(paths.lr_search_path(key)),
        str(paths.seeds_dir(key)),
        str(paths.predictions_dir(key)),  # DVC-cached: the only train output without `cache: false`
    }
    assert str(paths.predictions_dir(key)) in train["outs"]
    # A smaller training set's stage writes the same files under sizes/<n>/<strategy>, its own DVC outputs.
    subset = stage_body("train_subset")
    subset_name = paths.subset_run_name("${item.strategy}", "${item.size}")
    subset_outputs = {next(iter(out)) if isinstance(out, dict) else out for out in subset["outs"]}
    assert subset_outputs == {output.replace(key, subset_name) for output in declared_train_outputs}
    assert subset["deps"] == train["deps"]
    assert set(subset["params"]) == {
        *(param.replace(key, "${item.strategy}") for param in train["params"]),
        "data.split_seed",
        "data.subset_min_steps",
    }
    assert stage_body("plots")["outs"] == [{str(path): {"cache": False}} for path in layout.STAGE_OUTPUTS]
    assert stage_body("plots")["metrics"] == [{str(layout.VERDICT_PATH): {"cache": False}}]
    # The plots stage reruns when results or predictions change, and checks predictions against the test labels.
    assert {str(paths.RESULTS_DIR), str(paths.PREDICTIONS_DIR), str(paths.PREPARED_PATH)} <= set(
        stage_body("plots")["deps"]
    )


def test_top_level_plots_follow_the_data_files_and_name_no_strategy():
    definitions = [next(iter(entry.items())) for entry in DVC_YAML["plots"] if isinstance(entry, dict)]
    images = [entry for entry in DVC_YAML["plots"] if isinstance(entry, str)]
    plotted = {(file, column) for _, definition in definitions for file, column in definition["y"].items()}
    assert plotted == {(str(layout.EPOCHS_PATH), column) for column in layout.EPOCH_FIGURES} | {
        (str(layout.FINAL_SCORES_PATH), "bar"),
        (str(layout.CONFUSION_PATH), "actual"),
        (str(paths.COST_PATH), "test_top1"),  # one row per strategy: names no strategy
        (str(layout.DATA_BUDGET_PATH), "test_top1"),  # one row per (strategy, size): names neither
    }
    assert images == [str(layout.FIGURES_DIR)]  # one directory entry: every PNG, whatever the strategies


def test_every_declared_artifact_is_a_strategy_model_under_its_own_name():
    # The hand-written entries follow one scheme, so that the export stage's hint (transfer/models/artifacts.py)
    # names exactly what a new strategy's entries look like. Which strategies have entries is not tested:
    # a strategy added only in params.yaml gets a warning from its export stage, not a red suite.
    for name, body in DVC_YAML.get("artifacts", {}).items():
        strategy = name.removeprefix(artifacts.ARTIFACT_PREFIX).removesuffix("-onnx")
        assert artifacts.wanted_artifacts(strategy)[name] == body["path"], name
        assert body["type"] == "model", name


def cached_outputs() -> list[str]:
    """Every output DVC caches (not `cache: false`), as written in dvc.yaml (templates like ${key} kept)."""
    outputs = []
    for name in STAGES:
        body = stage_body(name)
        for out in body.get("outs", []):
            path, options = next(iter(out.items())) if isinstance(out, dict) else (out, {})
            if options.get("cache", True):
                outputs.append(path)
    return outputs


def test_no_file_git_tracks_lies_in_a_cached_output():
    # DVC refuses to run a stage whose cached output (or a file inside an output directory) git
    # tracks ("already tracked by SCM"): on a fresh clone `dvc repro` would stop at that stage.
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    files = tracked.stdout.splitlines()
    for output in cached_outputs():
        # A template stands for one path segment, a strategy name: predictions/${key} is predictions/<strategy>,
        # not the predictions/.gitignore DVC writes beside it (a strategy name never starts with a dot).
        segments = [re.escape(part) for part in re.split(r"\$\{[^}]+\}", output)]
        inside = re.compile("[^/.][^/]*".join(segments) + "(/.*)?")
        clashing = [file for file in files if inside.fullmatch(file)]
        assert not clashing, (output, clashing)
