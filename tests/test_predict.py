"""python -m stages.predict: labels images with a models/<strategy>.pt file; bad input is one line and exit 2."""

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.models import resnet18

from stages import predict
from transfer.datasets import image_decode
from transfer.errors import UserError, run_stage
from transfer.models import inference
from transfer.models.model_file import load_model_file
from transfer.models.network import build_inference_network
from transfer.training.augment import IMAGENET_MEAN, IMAGENET_STD, Normalization

CLASS_NAMES = [f"class_{index}" for index in range(7)]


def model_checkpoint(class_names: list[str] = CLASS_NAMES) -> dict:
    """A checkpoint in the layout transfer/results.save_model writes (seeded random weights)."""
    torch.manual_seed(0)
    net = resnet18(num_classes=len(class_names))
    return {
        "state_dict": net.state_dict(),
        "class_names": class_names,
        "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "image_size": 32},
        "config": {"strategy": {"name": "scratch"}, "model": {"head": {"hidden_size": 0, "dropout": 0.0}}},
    }


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    """A model file with random weights and 7 classes."""
    path = tmp_path / "model.pt"
    torch.save(model_checkpoint(), path)
    return path


def write_image(path: Path, size: tuple[int, int], mode: str = "RGB") -> Path:
    """A seeded random image of that size and mode."""
    generator = torch.Generator().manual_seed(sum(size))
    pixels = torch.randint(0, 256, (size[1], size[0], 3), generator=generator, dtype=torch.uint8).numpy()
    Image.fromarray(pixels).convert(mode).save(path)
    return path


def run_predict(*arguments: str) -> subprocess.CompletedProcess:
    """The command as a user runs it (a process importing torch: seconds; the exit status is its own)."""
    command = [sys.executable, "-m", "stages.predict", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.fixture
def predict_here(capsys):
    """predict_here(*arguments): the command's main() in this process, through run_stage as `python -m` runs it.

    Returns what a process would: exit status, stdout, stderr.
    """

    def run(*arguments: str) -> subprocess.CompletedProcess:
        capsys.readouterr()  # drop anything printed before
        try:
            run_stage(lambda: predict.main(list(arguments)))
            returncode = 0
        except SystemExit as exit_:
            returncode = exit_.code
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(["predict", *arguments], returncode, captured.out, captured.err)

    return run


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
    image = inference.load_image(write_image(tmp_path / "a.png", (32, 32)), 32)
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
    result = run_predict(str(model_file), str(folder), str(tmp_path / "missing.png"))  # the command's exit status
    assert result.returncode == 2
    assert "good.png" in result.stdout and "class_" in result.stdout
    assert "broken.png" in result.stderr and "missing.png" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("content", [b"garbage", None])
def test_a_model_file_that_is_not_ours_is_one_line(tmp_path: Path, content: bytes | None, predict_here):
    model = tmp_path / "model.pt"
    if content is None:
        torch.save({"weights": torch.zeros(1)}, model)  # a torch file, but not of this project
    else:
        model.write_bytes(content)
    result = predict_here(str(model), str(write_image(tmp_path / "a.png", (32, 32))))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and str(model) in result.stderr


def test_predict_labels_an_image_with_a_trained_model(e2e_repo, tmp_path: Path, predict_here):
    image = write_image(tmp_path / "some.png", (40, 30))
    model = e2e_repo.root / "models" / "scratch.pt"
    table = predict_here(str(model), str(image))
    assert table.returncode == 0, table.stderr
    records = json.loads(predict_here(str(model), str(image), "--json").stdout)
    class_names = load_model_file(model)["class_names"]
    assert records[0]["top5"][0]["class"] in class_names and records[0]["top5"][0]["class"] in table.stdout
    assert 0.0 <= records[0]["top5"][0]["probability"] <= 1.0


# --- crafted inputs: one line each, the other images still labelled ------------------------------------


def test_huge_aspect_image_is_cropped_before_it_is_resized(tmp_path: Path):
    # 1x100,000 px: a 400-byte PNG. Resized before cropping it would become 32x3,200,000 (410 MB as PIL's
    # 4-byte RGB pixels); cropped first it is a 1x1 square. The bound is the child's peak RSS growth over
    # what importing torch and PIL cost, and leaves 64 MB for PIL's and the allocator's own working sets.
    image = tmp_path / "strip.png"
    Image.new("RGB", (1, 100_000), (200, 30, 10)).save(image)
    child = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from transfer.models.inference import load_image\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "pixels = load_image(Path(sys.argv[1]), 32)\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(after - before, tuple(pixels.shape), pixels[:, 0, 0].tolist(), sep='|')\n"
    )
    result = subprocess.run([sys.executable, "-c", child, str(image)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    growth_kib, shape, pixel = result.stdout.split("|")
    assert int(growth_kib) < 64 * 1024  # ru_maxrss is in KiB on Linux
    assert shape == "(3, 32, 32)" and pixel.strip() == "[200, 30, 10]"


def test_image_beyond_the_pixel_limit_is_refused_from_its_header(tmp_path: Path):
    path = tmp_path / "wide.png"
    Image.new("L", (image_decode.MAX_PIXELS // 1000 + 1, 1000)).save(path)  # zeros: a few KB on disk
    with pytest.raises(UserError, match="more than the 50000000 this project decodes"):
        inference.load_image(path, 32)


def damaged_png(path: Path) -> Path:
    """A PNG whose pixel data continues in a chunk of an invalid type: PIL's decoder raises SyntaxError."""
    Image.new("RGB", (8, 8), (1, 2, 3)).save(path)
    content = path.read_bytes()
    idat_start = content.index(b"IDAT") - 4  # the chunk's 4-byte length comes first
    (length,) = struct.unpack(">I", content[idat_start : idat_start + 4])
    pixels = content[idat_start + 8 : idat_start + 8 + length]  # the compressed pixels
    rest = content[idat_start + 12 + length :]  # after the chunk's CRC: IEND

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    half = length // 2
    path.write_bytes(content[:idat_start] + chunk(b"IDAT", pixels[:half]) + chunk(b"\0\1\2\3", pixels[half:]) + rest)
    return path


def test_damaged_png_and_fifo_are_one_line_each_and_the_others_are_labelled(
    model_file: Path, tmp_path: Path, predict_here
):
    folder = tmp_path / "images"
    folder.mkdir()
    write_image(folder / "good.png", (40, 30))
    damaged_png(folder / "damaged.png")
    os.mkfifo(folder / "pipe.png")  # opened for reading, a FIFO would wait for a writer forever
    result = predict_here(str(model_file), str(folder))
    assert result.returncode == 2
    assert "good.png" in result.stdout and "class_" in result.stdout
    lines = result.stderr.splitlines()
    assert lines[0] == "error: 2 bad inputs:"
    assert len(lines) == 3
    assert lines[1].startswith(f"{folder / 'damaged.png'}: not a readable image (SyntaxError: ")
    assert lines[2] == f"{folder / 'pipe.png'}: not a regular file"


def test_control_characters_in_class_and_file_names_are_escaped(tmp_path: Path, predict_here):
    names = ["\x1b[2J\x1b[31mred"] + CLASS_NAMES[1:]
    model = tmp_path / "model.pt"
    torch.save(model_checkpoint(names), model)
    image = write_image(tmp_path / "a\x1b]0;title\x07.png", (32, 32))
    result = predict_here(str(model), str(image), "--top", str(len(names)))
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "\\x1b[2J\\x1b[31mred" in result.stdout and "a\\x1b]0;title\\x07.png" in result.stdout


def _edit(edit) -> dict:
    checkpoint = model_checkpoint()
    edit(checkpoint)
    return checkpoint


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (
            lambda c: c.update(class_names=CLASS_NAMES[:5]),
            "fc.weight has shape (7, 512), expected (5, 512) (for 5 class",
        ),
        (lambda c: c.update(config="scratch"), "config is not a mapping"),
        (lambda c: c["config"]["model"]["head"].update(width=3), "config.model.head has keys"),
        (lambda c: c["config"]["model"]["head"].update(hidden_size="wide"), "hidden_size is not >= 0"),
        (lambda c: c["normalization"].update(image_size=-5), "image_size = -5, expected an integer from 32 to 512"),
        (lambda c: c["normalization"].update(image_size=40000), "image_size = 40000"),
        (lambda c: c["normalization"].update(std=[0.2, 0.0, 0.2]), "normalization.std holds a value <= 0"),
        (lambda c: c["state_dict"].update(extra=torch.zeros(1)), "state_dict has unexpected 'extra'"),
        (lambda c: c["state_dict"].pop("fc.bias"), "state_dict lacks 'fc.bias'"),
        (lambda c: c["state_dict"].update({"fc.bias": [0.0] * 7}), "state_dict fc.bias is not a tensor"),
        (lambda c: c.update(class_names=[1, 2, 3, 4, 5, 6, 7]), "class_names holds a non-string"),
    ],
    ids=[
        "class-count",
        "config-string",
        "extra-head-key",
        "hidden-size-type",
        "image-size-negative",
        "image-size-huge",
        "std-zero",
        "extra-weight",
        "missing-weight",
        "weight-not-tensor",
        "class-name-type",
    ],
)
def test_bad_model_file_is_one_line_when_loaded(tmp_path: Path, edit, fragment: str):
    # predict and export load (and so check) the file before they build a network from it
    path = tmp_path / "model.pt"
    torch.save(_edit(edit), path)
    with pytest.raises(UserError) as caught:
        load_model_file(path)
    message = str(caught.value)
    assert fragment in message and str(path) in message and "\n" not in message


def test_huge_head_in_a_model_file_is_checked_without_allocating_it(tmp_path: Path):
    # hidden_size 10**9 describes a 512 x 10**9 float32 layer (2 TB); on the meta device it costs nothing
    path = tmp_path / "model.pt"
    torch.save(_edit(lambda c: c["config"]["model"]["head"].update(hidden_size=10**9)), path)
    with pytest.raises(UserError, match="state_dict lacks 'fc.0.weight' and 3 more"):
        load_model_file(path)
