"""Does dvc.yaml's `artifacts:` name a strategy's model files? A warning, never a failure, when not.

DVC cannot loop over `artifacts:` (no foreach there), so dvc.yaml names each default strategy's
model and ONNX file by hand. A strategy added only in params.yaml trains, exports and is compared like
any other; only `dvc artifacts get` and model registries do not know it until its entries are added,
and the export stage says which to add. dvc.yaml is not a dependency of the export stage: it changes
this message only, never a file.
"""

import sys
from pathlib import Path

import yaml

from transfer import paths

ARTIFACT_PREFIX = "resnet18-cifar100-"  # artifact names: resnet18-cifar100-<strategy>[-onnx]
DVC_YAML_PATH = Path("dvc.yaml")


def wanted_artifacts(strategy: str) -> dict[str, str]:
    """artifact name -> path, for a strategy's PyTorch model and its ONNX export."""
    return {
        f"{ARTIFACT_PREFIX}{strategy}": str(paths.model_path(strategy)),
        f"{ARTIFACT_PREFIX}{strategy}-onnx": str(paths.onnx_path(strategy)),
    }


def declared_artifact_paths(dvc_yaml: Path) -> set[str]:
    """The paths dvc.yaml's artifacts: name (none when the file is missing or has no such section)."""
    try:
        pipeline = yaml.safe_load(dvc_yaml.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return set()  # DVC itself reports an unreadable dvc.yaml; this check only adds a hint
    artifacts = pipeline.get("artifacts") if isinstance(pipeline, dict) else None
    if not isinstance(artifacts, dict):
        return set()
    return {str(body["path"]) for body in artifacts.values() if isinstance(body, dict) and "path" in body}


def missing_artifact_entries(strategy: str, dvc_yaml: Path = DVC_YAML_PATH) -> list[str]:
    """The dvc.yaml artifacts: entries (one line of YAML each) that a strategy's model files lack."""
    declared = declared_artifact_paths(dvc_yaml)
    return [
        f"{name}: {{path: {path}, type: model}}"
        for name, path in wanted_artifacts(strategy).items()
        if path not in declared
    ]


def warn_if_not_artifacts(strategy: str, dvc_yaml: Path = DVC_YAML_PATH) -> None:
    """Print one line naming the artifacts: entries to add to dvc.yaml, when any are missing."""
    missing = missing_artifact_entries(strategy, dvc_yaml)
    if missing:
        print(
            f"warning: {dvc_yaml} artifacts: does not name {strategy}'s model files, so `dvc artifacts get` "
            f"cannot find them; add under artifacts: " + "; ".join(missing),
            file=sys.stderr,
        )
