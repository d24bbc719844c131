"""A strategy that dvc.yaml's artifacts: does not name gets a warning from its export stage, never a failure."""

from pathlib import Path

import pytest

from stages import export as export_stage
from transfer.models import artifacts

DVC_YAML = """
stages: {}
artifacts:
  resnet18-cifar100-shallow:
    path: models/shallow.pt
    type: model
  resnet18-cifar100-shallow-onnx:
    path: models/shallow.onnx
    type: model
  resnet18-cifar100-probe:
    path: models/probe.pt
    type: model
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    """A folder whose dvc.yaml names shallow's two model files and probe's PyTorch file only."""
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    monkeypatch.chdir(tmp_path)
    # The ONNX export itself is tested in test_export.py; here only what the stage says after it.
    monkeypatch.setattr(export_stage, "export", lambda strategy: None)
    return tmp_path


def test_a_declared_strategy_exports_without_a_warning(project, capsys):
    export_stage.main(["shallow"])
    assert capsys.readouterr().err == ""


def test_an_undeclared_model_file_is_named_with_the_entry_to_add(project, capsys):
    export_stage.main(["probe"])  # returns normally: the stage succeeds
    (line,) = capsys.readouterr().err.splitlines()
    assert "`dvc artifacts get` cannot find them" in line
    assert line.endswith("add under artifacts: resnet18-cifar100-probe-onnx: {path: models/probe.onnx, type: model}")


def test_a_new_strategy_gets_both_entries(project):
    assert artifacts.missing_artifact_entries("extra") == [
        "resnet18-cifar100-extra: {path: models/extra.pt, type: model}",
        "resnet18-cifar100-extra-onnx: {path: models/extra.onnx, type: model}",
    ]


@pytest.mark.parametrize("content", ["", "stages: {}\n", "artifacts: [1, 2]\n", "artifacts: {x: 3}\n", ": - ["])
def test_a_dvc_yaml_without_usable_artifacts_counts_as_declaring_none(project, content):
    (project / "dvc.yaml").write_text(content)
    assert len(artifacts.missing_artifact_entries("shallow")) == 2
