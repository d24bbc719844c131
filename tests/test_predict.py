"""python -m stages.predict: labels images with a models/<strategy>.pt file; bad input is one line and exit 2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.models import resnet18

from stages import predict
from transfer import inference
from transfer.augment import IMAGENET_MEAN, IMAGENET_STD, Normalization
from transfer.model import build_inference_network, load_model_file

CLASS_NAMES = [f"class_{index}" for index in range(7)]


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    """A model file in the layout transfer/results.save_model writes (random weights, 7 classes)."""
    torch.manual_seed(0)
    net = resnet18(num_classes=len(CLASS_NAMES))
    checkpoint = {
        "state_dict": net.state_dict(),
        "class_names": CLASS_NAMES,
        "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "image_size": 32},
        "config": {"strategy": {"name": "scratch"}, "model": {"head": {"hidden_size": 0, "dropout": 0.0}}},
    }
    path = tmp_path / "model.pt"
    torch.save(checkpoint, path)
    return path


def write_image(path: Path, size: tuple[int, int], mode: str = "RGB") -> Path:
    """A seeded random image of that size and mode."""
    generator = torch.Generator().manual_seed(sum(size))
    pixels = torch.randint(0, 256, (size[1], size[0], 3), generator=generator, dtype=torch.uint8).numpy()
    Image.fromarray(pixels).convert(mode).save(path)
    return path


def run_predict(*arguments: str) -> subprocess.CompletedProcess:
    """The command as a user runs it."""
    command = [sys.executable, "-m", "stages.predict", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_json_lists_top_k_classes_with_probabilities(model_file: Path, tmp_path: Path, capsys):
    images = [write_image(tmp_path / "a.png", (50, 40)), write_image(tmp_path / "b.jpg", (32, 32), "L")]
    predict.main([str(model_file), *map(str, images), "--json", "--top", "3"])
    records = json.loads(capsys.readouterr().out)
    assert [record["file"] for record in records] == [str(path) for path in images]
    for record in records:
        assert len(record["top5"]) == 3
        assert {entry["class"] for entry in record["top5"]} <= set(CLASS_NAMES)
        probabilities = [entry["probability"] for entry in record["top5"]]
        assert probabilities == sorted(probabilities, reverse=True)


def test_probabilities_match_the_network_on_the_normalised_image(model_file: Path, tmp_path: Path):
    image = inference.load_image(write_image(tmp_path / "a.png", (32, 32)))
    checkpoint = load_model_file(model_file)
    inputs = Normalization.from_record(checkpoint["normalization"])(image[None])
    expected = build_inference_network(checkpoint)(inputs).softmax(dim=1)[0]
    ranked = inference.top_classes(checkpoint, image[None], len(CLASS_NAMES), torch.device("cpu"), 4)[0]
    for name, probability in ranked:
        # Rounded to 6 decimals on output: at most 5e-7 off.
        assert abs(probability - expected[CLASS_NAMES.index(name)].item()) <= 5e-7


def test_folder_is_walked_and_bad_files_are_listed_with_exit_2(model_file: Path, tmp_path: Path):
    folder = tmp_path / "images"
    (folder / "nested").mkdir(parents=True)
    write_image(folder / "nested" / "good.png", (64, 48))
    (folder / "broken.png").write_bytes(b"not an image")
    result = run_predict(str(model_file), str(folder), str(tmp_path / "missing.png"))
    assert result.returncode == 2
    assert "good.png" in result.stdout and "class_" in result.stdout
    assert "broken.png" in result.stderr and "missing.png" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("content", [b"garbage", None])
def test_a_model_file_that_is_not_ours_is_one_line(tmp_path: Path, content: bytes | None):
    model = tmp_path / "model.pt"
    if content is None:
        torch.save({"weights": torch.zeros(1)}, model)  # a torch file, but not of this project
    else:
        model.write_bytes(content)
    result = run_predict(str(model), str(write_image(tmp_path / "a.png", (32, 32))))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and str(model) in result.stderr


def test_predict_labels_an_image_with_a_trained_model(e2e_repo, tmp_path: Path):
    image = write_image(tmp_path / "some.png", (40, 30))
    model = e2e_repo.root / "models" / "scratch.pt"
    table = run_predict(str(model), str(image))
    assert table.returncode == 0, table.stderr
    records = json.loads(run_predict(str(model), str(image), "--json").stdout)
    class_names = load_model_file(model)["class_names"]
    assert records[0]["top5"][0]["class"] in class_names and records[0]["top5"][0]["class"] in table.stdout
    assert 0.0 <= records[0]["top5"][0]["probability"] <= 1.0
