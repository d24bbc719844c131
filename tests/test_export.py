"""Stage export: models/<strategy>.onnx gives PyTorch's logits in onnxruntime; a mismatch writes nothing."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch
from torchvision.models import resnet18

from transfer import paths
from transfer.errors import UserError
from transfer.models import onnx_export
from transfer.models.onnx_export import export
from transfer.training.augment import IMAGENET_MEAN, IMAGENET_STD

# Run in a separate process, as a user's inference code would: onnxruntime on the file alone. One process
# checks every (model file, ONNX file) pair of its arguments and prints one largest difference per pair.
# 1e-3: fp32 ResNet18 logits of two runtimes differ by ~1e-6 relative; 1e-3 is loose for logits of order 1-10.
ONNX_VS_TORCH = """
import sys, numpy, onnxruntime, torch
from transfer.models.network import build_inference_network
from transfer.models.model_file import load_model_file
for model_path, onnx_path in zip(sys.argv[1::2], sys.argv[2::2]):
    checkpoint = load_model_file(model_path)
    size = checkpoint["normalization"]["image_size"]
    inputs = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    expected = build_inference_network(checkpoint)(inputs).detach().numpy()
    session = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    (actual,) = session.run(None, {"images": inputs.numpy()})
    print(float(numpy.abs(actual - expected).max()))
"""


def save_scratch_model(logit_scale: float = 1.0) -> None:
    """models/scratch.pt in save_model's layout: seeded random weights, 5 classes, the head scaled by logit_scale."""
    torch.manual_seed(0)
    state = resnet18(num_classes=5).state_dict()
    state["fc.weight"] *= logit_scale
    state["fc.bias"] *= logit_scale
    checkpoint = {
        "state_dict": state,
        "class_names": [f"class_{index}" for index in range(5)],
        "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "image_size": 32},
        "config": {"strategy": {"name": "scratch"}, "model": {"head": {"hidden_size": 0, "dropout": 0.0}}},
        "strategy": "scratch",
    }
    paths.MODELS_DIR.mkdir(exist_ok=True)
    torch.save(checkpoint, paths.model_path("scratch"))


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    """A folder with models/scratch.pt (random weights, 5 classes)."""
    monkeypatch.chdir(tmp_path)
    save_scratch_model()
    return tmp_path


def test_export_is_reproducible_and_carries_metadata(project: Path):
    export("scratch")
    first = paths.onnx_path("scratch").read_bytes()
    export("scratch")
    assert paths.onnx_path("scratch").read_bytes() == first  # DVC users expect same inputs, same bytes
    metadata = {prop.key: prop.value for prop in onnx.load(paths.onnx_path("scratch")).metadata_props}
    assert json.loads(metadata["class_names"]) == [f"class_{index}" for index in range(5)]
    assert json.loads(metadata["mean"]) == list(IMAGENET_MEAN) and metadata["strategy"] == "scratch"


def test_mismatch_fails_with_one_line_and_writes_nothing(project: Path, monkeypatch):
    monkeypatch.setattr(onnx_export, "logit_difference", lambda net, model, image_size: (0.5, 3.0))
    with pytest.raises(UserError, match="differ by 0.5"):
        export("scratch")
    assert sorted(path.name for path in paths.MODELS_DIR.iterdir()) == ["scratch.pt"]


def test_a_valid_model_with_large_logits_exports(project: Path):
    # a head scaled 10**5 gives logits of thousands, where one fp32 ulp is about 1e-3: an absolute 1e-4 failed it
    save_scratch_model(logit_scale=1e5)
    checkpoint = onnx_export.load_model_file(paths.model_path("scratch"))
    net = onnx_export.build_inference_network(checkpoint)
    difference, logit_scale = onnx_export.logit_difference(net, onnx_export.onnx_bytes(net, 32, {}), 32)
    assert logit_scale > 1000 and difference > 1e-4  # the case the absolute bound refused
    export("scratch")
    assert paths.onnx_path("scratch").is_file()


def test_an_export_with_one_perturbed_weight_fails(project: Path, monkeypatch):
    # the graph onnxruntime runs has layer4's last conv 1% off: a wrong export, not rounding
    exported = onnx_export.onnx_bytes

    def perturbed_export(net, image_size, metadata):
        wrong = copy.deepcopy(net)
        with torch.no_grad():
            wrong.layer4[1].conv2.weight.mul_(1.01)
        return exported(wrong, image_size, metadata)

    monkeypatch.setattr(onnx_export, "onnx_bytes", perturbed_export)
    with pytest.raises(UserError, match="logits differ by .* no ONNX file written"):
        export("scratch")
    assert not paths.onnx_path("scratch").exists()


def test_every_onnx_model_matches_pytorch_in_another_process(e2e_repo):
    strategies = e2e_repo.strategies()
    files = [str(e2e_repo.root / path(name)) for name in strategies for path in (paths.model_path, paths.onnx_path)]
    result = subprocess.run(
        [sys.executable, "-c", ONNX_VS_TORCH, *files],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parents[1],
        check=True,
    )
    differences = [float(line) for line in result.stdout.split()]
    assert len(differences) == len(strategies)
    for strategy, difference in zip(strategies, differences):
        assert difference <= 1e-3, strategy
    assert "up to date" in e2e_repo.dvc("status").lower() or e2e_repo.dvc("status").strip() == ""
