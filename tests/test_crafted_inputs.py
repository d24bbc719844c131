"""Crafted image folders and model files (issue 30): each ends in one line, exit 2, nothing written, bounded memory.

Stages run in this process where a hang is impossible (run_stage around main, as `python -m` runs it); a FIFO
model file and the memory bounds run in a child process with a timeout or an address-space limit.
"""

import io
import os
import resource
import struct
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stages import predict, prepare
from tests.support.project import write_params
from tests.test_image_folder import CLASSES, folder_params
from tests.test_predict import model_checkpoint, write_image
from transfer import paths
from transfer.datasets import image_decode
from transfer.datasets.image_decode import decode_square
from transfer.errors import UserError, run_stage
from transfer.models.inference import read_images
from transfer.models.model_file import load_model_file
from transfer.sources.synthetic_folder import SyntheticFolder, write_synthetic_folder

CHILD_TIMEOUT_SECONDS = 60  # a guard against the hangs these tests are about, not a timed assertion


# --- running a stage in this process ----------------------------------------------------------


def run_in_process(main, argv: list[str], capsys) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of run_stage(main(argv)), as `python -m stages.<name>` would end."""
    capsys.readouterr()
    try:
        run_stage(lambda: main(argv))
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def one_error_line(status: int, stderr: str) -> str:
    """The single `error:` line of a refusal (exit 2, no traceback), without its prefix."""
    assert status == 2, stderr
    assert "Traceback" not in stderr and len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith("error: "), stderr
    return stderr.removeprefix("error: ").rstrip("\n")


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """A valid folder dataset: 5 images of each of three classes, no test/."""
    return write_synthetic_folder(tmp_path / "images", SyntheticFolder(CLASSES, train_per_class=5))


def prepare_in_process(tmp_path: Path, folder: Path, monkeypatch, capsys, *argv: str, **data) -> tuple[int, str, str]:
    """The prepare stage run in a fresh project folder under tmp_path whose params read folder."""
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    write_params(project, folder_params(folder, **{"val_size": 3, "test_size": 3, **data}))
    monkeypatch.chdir(project)
    return run_in_process(prepare.main, list(argv), capsys)


def refused_by_prepare(tmp_path: Path, folder: Path, monkeypatch, capsys, **data) -> str:
    """prepare's one error line; nothing prepared."""
    message = one_error_line(*prepare_in_process(tmp_path, folder, monkeypatch, capsys, **data)[::2])
    assert not (tmp_path / "project" / paths.PREPARED_DIR).exists() or not any(
        (tmp_path / "project" / paths.PREPARED_DIR).iterdir()
    )
    return message


# --- the folder's layout ----------------------------------------------------------------------


def test_an_empty_test_folder_is_refused_not_taken_as_absent(tmp_path, image_folder, monkeypatch, capsys):
    (image_folder / "test").mkdir()
    (image_folder / "test" / ".DS_Store").write_bytes(b"\0")  # hidden entries alone count as empty
    message = refused_by_prepare(tmp_path, image_folder, monkeypatch, capsys)
    assert message.startswith(f"{image_folder / 'test'} holds no class folder") and "remove test/" in message


def test_an_unreadable_subfolder_is_named_not_skipped(tmp_path, image_folder, monkeypatch, capsys):
    # Root reads any folder whatever its permissions, so the refusal is what listing it raises for anyone else.
    locked = image_folder / "train" / "dog" / "more"
    locked.mkdir()
    write_image(locked / "extra.png", (20, 20))
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    message = refused_by_prepare(tmp_path, image_folder, monkeypatch, capsys)
    assert message.startswith(f"{locked}: cannot list this folder (Permission denied)")


@pytest.mark.parametrize("hidden", [False, True])
def test_a_fifo_anywhere_in_the_folder_is_refused_before_dvc_would_hash_it(
    tmp_path, image_folder, monkeypatch, capsys, hidden
):
    fifo = image_folder / "train" / "cat" / (".pipe" if hidden else "notes.txt")  # not even an image suffix
    os.mkfifo(fifo)
    message = refused_by_prepare(tmp_path, image_folder, monkeypatch, capsys)
    assert message.startswith(f"{fifo} is a FIFO, not a file: DVC would hang hashing it")
    # prepare --check says the same, decoding nothing (make repro runs it before dvc repro)
    status, _, stderr = prepare_in_process(tmp_path, image_folder, monkeypatch, capsys, "--check")
    assert one_error_line(status, stderr) == message


def test_a_link_to_a_device_or_outside_the_folder_is_refused(tmp_path, image_folder, monkeypatch, capsys):
    link = image_folder / "train" / "fox" / "zero.png"
    link.symlink_to("/dev/zero")
    message = refused_by_prepare(tmp_path, image_folder, monkeypatch, capsys)
    assert message.startswith(f"{link} is a link to /dev/zero, outside data.folder = {image_folder.resolve()}")
    link.unlink()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    write_image(outside / "a.png", (20, 20))
    (image_folder / "train" / "emu").symlink_to(outside)  # a whole class folder linked out
    assert "is a link to" in refused_by_prepare(tmp_path, image_folder, monkeypatch, capsys)


def test_the_same_file_reached_by_two_paths_is_refused_naming_both(tmp_path, image_folder, monkeypatch, capsys):
    # A class folder linked to another inside data.folder: every image would carry two labels.
    (image_folder / "train" / "cow").symlink_to(image_folder / "train" / "cat")
    message = refused_by_prepare(tmp_path, image_folder, monkeypatch, capsys)
    assert message.startswith(f"{image_folder / 'train' / 'cow'} and {image_folder / 'train' / 'cat'} are the same")
    (image_folder / "train" / "cow").unlink()
    first = image_folder / "train" / "cat" / "cat_0000.jpg"
    os.link(first, image_folder / "train" / "dog" / "copy.jpg")  # a hard link: one file, two paths
    message = refused_by_prepare(tmp_path, image_folder, monkeypatch, capsys)
    assert message.startswith(f"{image_folder / 'train' / 'dog' / 'copy.jpg'} and {first} are the same file")


def test_a_link_inside_the_folder_is_followed(tmp_path, image_folder, monkeypatch, capsys):
    pool = image_folder / "pool"
    pool.mkdir()
    (image_folder / "train" / "fox" / "fox_0001.bmp").rename(pool / "fox.bmp")
    (image_folder / "train" / "fox" / "linked.bmp").symlink_to(pool / "fox.bmp")
    status, stdout, stderr = prepare_in_process(tmp_path, image_folder, monkeypatch, capsys)
    assert status == 0, stderr
    assert "prepare: 9 train, 3 validation, 3 test images of 3 classes" in stdout


def test_prepare_check_reads_the_layout_and_writes_nothing(tmp_path, image_folder, monkeypatch, capsys):
    status, stdout, stderr = prepare_in_process(tmp_path, image_folder, monkeypatch, capsys, "--check")
    assert status == 0, stderr
    assert stdout.startswith(f"prepare --check: {image_folder}: 15 train images of 3 classes, no test/ folder")
    assert not (tmp_path / "project" / paths.PREPARED_PATH).exists()


@pytest.mark.parametrize(
    ("counts", "val_size", "split"),
    [({"cat": 2, "dog": 2, "emu": 1}, 3, "training"), ({"cat": 4, "dog": 5, "emu": 1}, 3, "validation")],
)
def test_a_class_left_without_training_or_validation_images_is_named(
    tmp_path, monkeypatch, capsys, counts, val_size, split
):
    folder = tmp_path / "images"
    for name, count in counts.items():
        for index in range(count):
            (folder / "train" / name).mkdir(parents=True, exist_ok=True)
            write_image(folder / "train" / name / f"{index}.png", (20 + index, 20))
        (folder / "test" / name).mkdir(parents=True, exist_ok=True)
        write_image(folder / "test" / name / "t.png", (30, 30))
    message = refused_by_prepare(tmp_path, folder, monkeypatch, capsys, val_size=val_size)
    assert message.startswith(f"class 'emu' has no {split} image")


# --- images -----------------------------------------------------------------------------------


def ico_holding_a_large_png(path: Path) -> Path:
    """An ICO whose directory says 1x1 but whose one entry is a 3000x3000 PNG (Pillow decodes the PNG's size)."""
    png = io.BytesIO()
    Image.new("L", (3000, 3000)).save(png, "PNG")
    data = png.getvalue()
    header = struct.pack("<HHH", 0, 1, 1) + struct.pack("<BBBBHHII", 1, 1, 0, 0, 1, 32, len(data), 22)
    path.write_bytes(header + data)
    return path


@pytest.mark.parametrize(
    "content",
    [
        lambda path: ico_holding_a_large_png(path),
        lambda path: path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"),
        lambda path: Image.new("RGB", (16, 16)).save(path, "ICNS"),
        lambda path: Image.new("RGB", (16, 16)).save(path, "TGA"),
    ],
    ids=["ico", "postscript", "icns", "tga"],
)
def test_formats_outside_the_allow_list_are_not_even_probed(tmp_path, content):
    path = tmp_path / "photo.png"  # the suffix promises a PNG; the bytes are another format
    content(path)
    with pytest.raises(UserError, match=r"photo\.png: not a readable image \(not one of the formats decoded: JPEG"):
        decode_square(path, 32)


def test_a_32_bit_tiff_is_refused_not_decoded_to_white(tmp_path):
    path = tmp_path / "deep.tif"
    Image.fromarray(np.full((20, 20), 70_000, dtype=np.int32)).save(path)  # mode I: 32-bit integers
    with pytest.raises(UserError, match="deep.tif: TIFF image of mode I, which this project does not decode"):
        decode_square(path, 16)


def many_scan_jpeg(path: Path, scans: int) -> Path:
    """A progressive JPEG whose first AC scan is repeated: libjpeg decodes every copy (about 6 ms each at 1 MP)."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 60, 30)).save(buffer, "JPEG", progressive=True)
    data = buffer.getvalue()
    sos = [index for index in range(len(data) - 1) if data[index : index + 2] == b"\xff\xda"]
    ac_scan = next(start for start in sos if data[start + 5 + 2 * data[start + 4]] > 0)  # spectral start Ss > 0
    end = next(start for start in sos if start > ac_scan)
    path.write_bytes(data[:end] + data[ac_scan:end] * (scans - len(sos)) + data[end:])
    return path


def test_a_jpeg_of_too_many_scans_is_refused_before_decoding(tmp_path):
    path = many_scan_jpeg(tmp_path / "scans.jpg", image_decode.MAX_JPEG_SCANS + 1)
    with pytest.raises(UserError, match=f"scans.jpg: a JPEG of {image_decode.MAX_JPEG_SCANS + 1} scans, more than"):
        decode_square(path, 32)
    # a standard progressive JPEG (10 scans) decodes as before
    Image.new("RGB", (64, 64), (120, 60, 30)).save(tmp_path / "standard.jpg", progressive=True)
    assert decode_square(tmp_path / "standard.jpg", 32).shape == (32, 32, 3)


def test_a_jpeg_header_of_too_many_markers_is_refused_before_it_is_parsed(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, "JPEG")
    data = buffer.getvalue()
    markers = image_decode.MAX_JPEG_HEADER_FF + 1  # empty comments (FF FE, length 2): Pillow parses each in Python
    path = tmp_path / "flood.jpg"
    path.write_bytes(data[:2] + b"\xff\xfe\x00\x02" * markers + data[2:])
    in_header = data[: data.index(b"\xff\xda")].count(b"\xff") + markers
    with pytest.raises(UserError, match=f"flood.jpg: a JPEG whose header holds {in_header} FF bytes"):
        decode_square(path, 32)


def test_decoding_the_largest_allowed_image_stays_under_its_documented_peak(tmp_path):
    # 7000x7000 16-bit gray (49 megapixels, the worst mode within MAX_PIXELS): peak RSS growth over the imports.
    path = tmp_path / "deep.png"
    Image.fromarray(np.zeros((7000, 7000), dtype=np.uint16)).save(path)
    child = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from transfer.datasets.image_decode import decode_square\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "decode_square(Path(sys.argv[1]), 512)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", child, str(path)], capture_output=True, text=True, timeout=CHILD_TIMEOUT_SECONDS
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) < image_decode.MAX_PIXELS_PEAK_MB * 1024  # ru_maxrss: KiB on Linux


def limit_address_space(megabytes: int):
    """preexec_fn for a child whose memory (address space) is capped."""
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (megabytes * 2**20, megabytes * 2**20))


def test_a_dataset_too_big_for_memory_is_one_line_with_its_size(tmp_path, image_folder):
    # 600 one-pixel images at 512 px need 450 MiB as uint8 RGB: more than a 384 MiB address space leaves.
    for index in range(200):
        for name in CLASSES:
            Image.new("RGB", (1, 1), (index, 0, 0)).save(image_folder / "train" / name / f"dot_{index}.png")
    project = tmp_path / "project"
    project.mkdir()
    write_params(project, folder_params(image_folder, stored_size=512, image_size=512, val_size=3, test_size=3))
    result = subprocess.run(
        [sys.executable, "-m", "stages.prepare"],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(paths.PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_SECONDS,
        preexec_fn=limit_address_space(384),
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith(
        "error: prepare: not enough memory for 615 images at 512x512 px (0.45 GiB as uint8 RGB); lower data.stored_size"
    )
    assert not (project / paths.PREPARED_PATH).exists()


def test_predict_out_of_memory_for_its_images_is_one_line_with_their_size():
    files = [Path(f"image_{index}.png") for index in range(1_000_000)]  # never opened: the allocation comes first
    with pytest.raises(UserError, match=r"^predict: not enough memory for 1000000 images at 512x512 px \(732\.42 GiB"):
        read_images(files, 512)


def test_predict_cpu_out_of_memory_in_the_forward_pass_is_one_line(tmp_path, monkeypatch, capsys):
    model = tmp_path / "model.pt"
    torch.save(model_checkpoint(), model)
    image = write_image(tmp_path / "a.png", (32, 32))

    def allocation_fails(*args, **kwargs):  # what PyTorch's CPU allocator raises (a RuntimeError)
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: "
            "you tried to allocate 4294967296 bytes. Error code 12 (Cannot allocate memory)"
        )

    monkeypatch.setattr(predict, "top_classes", allocation_fails)
    message = one_error_line(*run_in_process(predict.main, [str(model), str(image)], capsys)[::2])
    assert message == "predict: out of memory allocating 4.00 GiB in the forward pass; lower --batch-size"


# --- predict's inputs -------------------------------------------------------------------------


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.pt"
    torch.save(model_checkpoint(), path)
    return path


def test_a_folder_named_like_an_image_is_walked_not_labelled(tmp_path, model_file, capsys):
    folder = tmp_path / "photos"
    (folder / "x.png").mkdir(parents=True)
    write_image(folder / "x.png" / "inner.png", (30, 30))
    write_image(folder / "good.png", (30, 30))
    status, stdout, stderr = run_in_process(predict.main, [str(model_file), str(folder)], capsys)
    assert status == 0, stderr
    assert "good.png" in stdout and "inner.png" in stdout and stderr == ""


def test_a_model_file_that_is_a_fifo_is_refused_at_once(tmp_path):
    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)  # opened for reading, it would wait for a writer forever
    image = write_image(tmp_path / "a.png", (32, 32))
    result = subprocess.run(
        [sys.executable, "-m", "stages.predict", str(fifo), str(image)],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_SECONDS,
        cwd=paths.PROJECT_ROOT,
    )
    assert result.returncode == 2 and result.stdout == "", result.stderr
    assert result.stderr == f"error: {fifo}: not a usable model file of this project: it is not a regular file\n"


def deflated(path: Path) -> Path:
    """The same torch file with every record deflated: a few KB on disk for megabytes of zeros."""
    records = zipfile.ZipFile(path)
    contents = [(record.filename, records.read(record)) for record in records.infolist()]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in contents:
            archive.writestr(name, content)
    return path


def test_a_compressed_model_file_is_refused_before_anything_is_loaded(tmp_path, capsys):
    checkpoint = model_checkpoint()
    checkpoint["state_dict"] = {key: torch.zeros_like(value) for key, value in checkpoint["state_dict"].items()}
    checkpoint["state_dict"]["fc.weight"] = torch.zeros(2**22)  # 16 MB of zeros (of 60 MB): 60 KB deflated
    torch.save(checkpoint, tmp_path / "bomb.pt")
    model = deflated(tmp_path / "bomb.pt")
    assert model.stat().st_size < 2**21
    image = write_image(tmp_path / "a.png", (32, 32))
    status, stdout, stderr = run_in_process(predict.main, [str(model), str(image)], capsys)
    message = one_error_line(status, stderr)
    assert message.startswith(f"{model}: not a usable model file of this project: record ") and "compressed" in message
    assert stdout == ""


def test_a_model_file_holding_more_than_its_weights_is_refused(tmp_path):
    checkpoint = model_checkpoint()
    checkpoint["padding"] = torch.zeros(2**23)  # 32 MB beside weights of 45 MB: no network of its config needs it
    torch.save(checkpoint, tmp_path / "model.pt")
    with pytest.raises(UserError, match=r"its records hold \d+ bytes, more than its weights \(\d+ bytes\)"):
        load_model_file(tmp_path / "model.pt")


def quantized(weight: torch.Tensor) -> torch.Tensor:
    return torch.quantize_per_tensor(weight, 0.1, 0, torch.qint8)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda weight: weight.to_sparse(), "fc.weight is a torch.sparse_coo tensor, not a dense one"),
        (lambda weight: weight.to("meta"), "fc.weight is on the meta device, holding no values"),
        (quantized, "fc.weight is a quantized tensor, not a dense one"),
        (lambda weight: weight.double(), "fc.weight is torch.float64, expected torch.float32"),
        (lambda weight: weight.to(torch.complex64), "fc.weight is torch.complex64, expected torch.float32"),
        (lambda weight: weight.index_fill(0, torch.tensor([3]), float("nan")), "fc.weight holds NaN or infinite"),
        (lambda weight: torch.zeros(10_000)[: weight.numel()].view_as(weight), "fc.weight is a view of a larger"),
    ],
    ids=["sparse", "meta", "quantized", "float64", "complex", "nan", "view"],
)
def test_weights_that_are_not_dense_finite_float32_are_refused(tmp_path, change, fragment):
    checkpoint = model_checkpoint()
    checkpoint["state_dict"]["fc.weight"] = change(checkpoint["state_dict"]["fc.weight"])
    torch.save(checkpoint, tmp_path / "model.pt")
    with pytest.raises(UserError) as caught, warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's warnings on sparse and quantized tensors would be a second line
        load_model_file(tmp_path / "model.pt")
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_a_model_path_with_control_characters_is_printed_escaped(tmp_path, capsys):
    model = tmp_path / "bad\nname\x1b[31m.pt"
    model.write_bytes(b"not a model")
    image = write_image(tmp_path / "a.png", (32, 32))
    message = one_error_line(*run_in_process(predict.main, [str(model), str(image)], capsys)[::2])
    assert "\x1b" not in message and "bad\\nname\\x1b[31m.pt" in message


def test_a_valid_model_file_still_loads_to_the_same_weights(model_file):
    loaded = load_model_file(model_file)
    for key, value in model_checkpoint()["state_dict"].items():
        torch.testing.assert_close(loaded["state_dict"][key], value, rtol=0, atol=0)
