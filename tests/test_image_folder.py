"""data.dataset: folder: a user's train/<class>/ images decoded at data.stored_size, and every bad layout refused."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.project import copy_project, params_tree
from tests.test_failures import Project, assert_left_nothing, error_line
from transfer import paths
from transfer.config import parse_params
from transfer.datasets.image_decode import decode_square
from transfer.errors import UserError
from transfer.sources.synthetic_folder import IMAGE_KINDS, SyntheticFolder, class_colour, write_synthetic_folder

CLASSES = ("cat", "dog", "fox")
STORED_SIZE = 40


def folder_params(image_folder: Path, **data: object) -> dict:
    """Test params for a folder dataset at STORED_SIZE px, with data's keys changed."""
    changes = {"dataset": "folder", "folder": str(image_folder), "stored_size": STORED_SIZE, "image_size": STORED_SIZE}
    return params_tree({"data": {**changes, "val_size": 6, "test_size": 6, **data}})


def prepare_project(tmp_path: Path, folder: Path, **data: object) -> Project:
    """A project copy whose params read folder; download has run (it writes only the no-archive note)."""
    project = Project(copy_project(tmp_path / "project", folder_params(folder, **data)))
    project.run_ok("download")
    return project


def load_prepared_arrays(project: Project) -> dict[str, np.ndarray]:
    with np.load(project.root / paths.PREPARED_PATH) as arrays:
        return {key: arrays[key] for key in arrays.files}


# --- decoding ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_folder(tmp_path_factory) -> Path:
    """Every kind of image (formats, modes, sizes, an EXIF rotation) for each class, no test/ folder."""
    return write_synthetic_folder(tmp_path_factory.mktemp("images"), SyntheticFolder(CLASSES, train_per_class=12))


@pytest.mark.parametrize("kind", range(len(IMAGE_KINDS)))
def test_every_kind_of_image_becomes_an_upright_rgb_square_of_its_class(synthetic_folder: Path, kind: int):
    suffix, mode, width, height = IMAGE_KINDS[kind]
    index = CLASSES.index("dog")  # its stripes run along rows: a rotation would turn them into columns
    path = synthetic_folder / "train" / "dog" / f"dog_{(kind - index) % len(IMAGE_KINDS):04d}{suffix}"
    if mode not in ("RGB-rotated", "I;16"):  # those open as RGB and as I;16 or I
        assert Image.open(path).mode == mode
    square = decode_square(path, STORED_SIZE).astype(np.int32)
    assert square.shape == (STORED_SIZE, STORED_SIZE, 3)
    # Stripes along rows: each row's values are alike, and the rows alternate (the 4-px stripes of the
    # source survive the resize as changes between rows that dwarf the change along a row).
    change_down = np.abs(np.diff(square.mean(axis=(1, 2)))).mean()
    change_across = np.abs(np.diff(square.mean(axis=(0, 2)))).mean()
    assert change_down > 3 * change_across, (change_down, change_across)
    if mode in ("L", "I;16"):  # gray stays gray, and 16-bit gray is scaled to 8 bits, not clipped to white
        assert (square[..., 0] == square[..., 1]).all() and square.mean() < 230
    else:  # the class colour, within the noise (+-20) and the stripes (+40 on half the rows) of the source
        assert np.abs(square.reshape(-1, 3).mean(axis=0) - class_colour(index) - 20).max() < 25


def test_prepare_holds_out_a_stratified_test_split_and_names_classes_by_folder(tmp_path, synthetic_folder):
    project = prepare_project(tmp_path, synthetic_folder, test_size=6, val_size=6)
    assert not (project.root / paths.ARCHIVE_PATH).exists() and (project.root / paths.NO_ARCHIVE_PATH).is_file()
    project.run_ok("prepare")
    arrays = load_prepared_arrays(project)
    assert arrays["class_names"].tolist() == sorted(CLASSES)
    assert arrays["train_images"].shape == (36 - 12, STORED_SIZE, STORED_SIZE, 3)
    for split in ("val", "test"):  # 6 of 36 images, 12 a class: stratified gives each class exactly 2
        assert np.bincount(arrays[f"{split}_labels"], minlength=3).tolist() == [2, 2, 2]
    assert (arrays["fine_to_coarse"] == -1).all() and arrays["coarse_class_names"].size == 0
    # The same image decoded by the stage and by hand: the stage stores decode_square's pixels.
    first_cat = decode_square(synthetic_folder / "train" / "cat" / "cat_0000.jpg", STORED_SIZE)
    matches = [
        np.array_equal(image, first_cat) for split in ("train", "val", "test") for image in arrays[f"{split}_images"]
    ]
    assert sum(matches) == 1


def test_a_test_folder_is_the_test_split(tmp_path):
    folder = write_synthetic_folder(tmp_path / "images", SyntheticFolder(CLASSES, train_per_class=6, test_per_class=2))
    (folder / "test" / "fox").rename(tmp_path / "fox")  # test/ may leave a class out
    project = prepare_project(tmp_path, folder, val_size=3)
    project.run_ok("prepare")
    arrays = load_prepared_arrays(project)
    assert np.bincount(arrays["test_labels"], minlength=3).tolist() == [2, 2, 0]
    assert len(arrays["train_labels"]) + len(arrays["val_labels"]) == 18


def test_stray_files_are_skipped_and_counted(tmp_path):
    folder = write_synthetic_folder(tmp_path / "images", SyntheticFolder(CLASSES, train_per_class=5))
    (folder / "train" / "cat" / "notes.txt").write_text("not an image")
    (folder / "train" / "dog" / ".DS_Store").write_bytes(b"\0")  # hidden: not even counted
    project = prepare_project(tmp_path, folder, val_size=3, test_size=3)
    assert "(1 files that are not images skipped)" in project.run_ok("prepare").stdout


# --- bad input: one line naming the path, exit 2, nothing written -----------------------------------


def truncated_jpeg(folder: Path) -> str:
    path = folder / "train" / "cat" / "cat_0000.jpg"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    return "cat_0000.jpg"


def no_train_folder(folder: Path) -> str:
    (folder / "train").rename(folder / "training")
    return "has no train/ folder"


def empty_class(folder: Path) -> str:
    (folder / "train" / "emu").mkdir()
    (folder / "train" / "emu" / "readme.txt").write_text("no images yet")
    return "emu holds no image"


def unknown_test_class(folder: Path) -> str:
    (folder / "test" / "yak").mkdir(parents=True)
    Image.new("RGB", (20, 20)).save(folder / "test" / "yak" / "a.png")
    return "class 'yak' is not in"


def one_class(folder: Path) -> str:
    for name in ("dog", "fox"):
        (folder / "train" / name).rename(folder / name)
    return "1 class folder(s) ['cat']"


def loose_image(folder: Path) -> str:
    Image.new("RGB", (20, 20)).save(folder / "train" / "stray.png")
    return "stray.png is not in a class folder"


@pytest.mark.parametrize(
    "damage", [truncated_jpeg, no_train_folder, empty_class, unknown_test_class, one_class, loose_image]
)
def test_a_bad_folder_is_one_line_and_prepares_nothing(tmp_path, damage):
    folder = write_synthetic_folder(tmp_path / "images", SyntheticFolder(CLASSES, train_per_class=5))
    expected = damage(folder)
    project = prepare_project(tmp_path, folder, val_size=3, test_size=3)
    message = error_line(project.run("prepare"))
    assert expected in message
    if damage is truncated_jpeg:  # how many, of how many, and nothing trained on the rest
        assert message.startswith("1 of 15 images are unreadable, nothing was prepared: ")
    assert_left_nothing(project, paths.PREPARED_PATH)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"stored_size": 8}, "data.stored_size = 8 is invalid: use 16 to 512"),
        ({"stored_size": 600, "image_size": 600}, "data.stored_size = 600 is invalid: use 16 to 512"),
        ({"stored_size": 96, "image_size": 64}, "data.image_size = 64 is invalid: use 96 to 512"),
        ({"dataset": "cifar100", "stored_size": 64, "image_size": 64}, "CIFAR images are 32x32, so use 32"),
        ({"folder": ""}, "data.folder is empty"),
        ({"test_size": 0}, "data.test_size = 0 is invalid"),
    ],
)
def test_sizes_outside_what_is_supported_are_refused(tmp_path, data, expected):
    with pytest.raises(UserError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        parse_params(folder_params(tmp_path, **data))


def test_a_folder_path_that_is_not_a_folder_is_one_line(tmp_path):
    project = prepare_project(tmp_path, tmp_path / "missing")
    assert "is not a folder" in error_line(project.run("prepare"))
    assert_left_nothing(project, paths.PREPARED_PATH)
