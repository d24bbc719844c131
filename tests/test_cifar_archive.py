"""The CIFAR-100 archive reader, and the synthetic writer's faithfulness to the real Python 2 format."""

import io
import os
import pickle
import pickletools
import tarfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from tests.support.project import params_tree
from transfer.config import SYNTHETIC_SOURCE, parse_params
from transfer.datasets.cifar_archive import read_archive
from transfer.datasets.cifar_format import (
    ARCHIVE_NAME,
    IMAGE_SHAPE,
    META_MEMBER,
    NUM_CLASSES,
    NUM_COARSE_CLASSES,
    STRAY_MEMBER,
    TEST_IMAGES,
    TEST_MEMBER,
    TRAIN_IMAGES,
    TRAIN_MEMBER,
)
from transfer.errors import UserError
from transfer.sources.archive import obtain_archive
from transfer.sources.synthetic_archive import write_synthetic_archive

TRAIN_SIZE = 300  # images: 3 per class
TEST_SIZE = 100  # images: 1 per class
SEED = 7


@pytest.fixture(scope="module")
def archive_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("raw") / ARCHIVE_NAME
    write_synthetic_archive(path, train_size=TRAIN_SIZE, test_size=TEST_SIZE, seed=SEED)
    return path


def _member_bytes(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {member.name: tar.extractfile(member).read() for member in tar if member.isfile()}


def _rewrite(source: Path, destination: Path, edit) -> Path:
    """Copy an archive, letting edit(contents) change the decoded pickles (member -> dict) before re-pickling."""
    contents = {
        name: pickle.loads(payload, encoding="latin1")
        for name, payload in _member_bytes(source).items()
        if name in (TRAIN_MEMBER, TEST_MEMBER, META_MEMBER)
    }
    edit(contents)
    with tarfile.open(destination, "w:gz") as tar:
        for name, content in contents.items():
            # protocol 3 writes bytes as BINBYTES; protocol 2 would call _codecs.encode, which the reader refuses
            payload = pickle.dumps(content, protocol=3)
            _add(tar, name, payload)
    return destination


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def _replace_member(source: Path, destination: Path, name: str, payload: bytes) -> Path:
    """Copy an archive with one member's bytes replaced."""
    with tarfile.open(destination, "w:gz") as tar:
        for member_name, member_payload in _member_bytes(source).items():
            _add(tar, member_name, payload if member_name == name else member_payload)
    return destination


# --- round trip -------------------------------------------------------------------------------


def test_round_trip_gives_balanced_hwc_uint8_splits(archive_path: Path) -> None:
    archive = read_archive(archive_path)
    for split, size in ((archive.train, TRAIN_SIZE), (archive.test, TEST_SIZE)):
        assert split.images.shape == (size, *IMAGE_SHAPE)
        assert split.images.dtype == np.uint8 and split.images.flags.c_contiguous
        assert split.fine_labels.shape == split.coarse_labels.shape == (size,)
        assert split.fine_labels.dtype == split.coarse_labels.dtype == np.int64
        np.testing.assert_array_equal(np.bincount(split.fine_labels, minlength=NUM_CLASSES), size // NUM_CLASSES)
        np.testing.assert_array_equal(split.coarse_labels, split.fine_labels // 5)
        assert split.coarse_labels.min() == 0 and split.coarse_labels.max() == NUM_COARSE_CLASSES - 1
        assert 0 < split.images.std() and split.images.min() < 60 and split.images.max() > 200
    assert archive.fine_label_names == tuple(f"class_{label:03d}" for label in range(NUM_CLASSES))
    assert archive.coarse_label_names == tuple(f"superclass_{label:02d}" for label in range(NUM_COARSE_CLASSES))


def test_same_seed_gives_same_bytes_and_another_seed_differs(archive_path: Path, tmp_path: Path) -> None:
    same = tmp_path / "elsewhere" / ARCHIVE_NAME  # another folder too: the temp name must not leak into the gzip header
    other = tmp_path / "other.tar.gz"
    write_synthetic_archive(same, train_size=TRAIN_SIZE, test_size=TEST_SIZE, seed=SEED)
    write_synthetic_archive(other, train_size=TRAIN_SIZE, test_size=TEST_SIZE, seed=SEED + 1)
    assert same.read_bytes() == archive_path.read_bytes()
    assert other.read_bytes() != archive_path.read_bytes()
    assert not (read_archive(other).train.images == read_archive(archive_path).train.images).all()
    assert sorted(path.name for path in tmp_path.rglob("*") if path.is_file()) == [ARCHIVE_NAME, "other.tar.gz"]


def test_archive_has_the_real_members_with_fixed_owner_and_time(archive_path: Path) -> None:
    with tarfile.open(archive_path, "r:gz") as tar:
        members = tar.getmembers()
    assert {member.name for member in members if member.isfile()} == {
        TRAIN_MEMBER,
        TEST_MEMBER,
        META_MEMBER,
        STRAY_MEMBER,
    }
    assert all(member.mtime == 0 and member.uid == 0 and member.uname == "" for member in members)


# --- the Python 2 pickle format -----------------------------------------------------------------


@pytest.mark.parametrize("member", [TRAIN_MEMBER, TEST_MEMBER, META_MEMBER])
def test_members_are_python2_protocol2_pickles(archive_path: Path, member: str) -> None:
    payload = _member_bytes(archive_path)[member]
    operations = [(opcode.name, argument) for opcode, argument, _ in pickletools.genops(payload)]
    names = {name for name, _ in operations}
    assert operations[0] == ("PROTO", 2)
    assert not names & {
        "BINUNICODE",
        "SHORT_BINUNICODE",
        "BINUNICODE8",
        "UNICODE",
        "BINBYTES",
        "SHORT_BINBYTES",
        "FRAME",
    }
    assert names & {"BINSTRING", "SHORT_BINSTRING"}
    if member != META_MEMBER:
        globals_ = [argument for name, argument in operations if name == "GLOBAL"]
        assert globals_ == ["numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"]
        raw_size = TRAIN_SIZE * 3072 if member == TRAIN_MEMBER else TEST_SIZE * 3072
        assert ("BINSTRING", raw_size) in [
            (name, len(argument)) for name, argument in operations if name == "BINSTRING"
        ]


def test_default_encoding_fails_on_train_as_with_the_real_archive(archive_path: Path) -> None:
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(_member_bytes(archive_path)[TRAIN_MEMBER])


def test_torchvision_cifar100_decodes_it_like_read_archive(
    archive_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torchvision_cifar = pytest.importorskip("torchvision.datasets.cifar")
    with tarfile.open(archive_path, "r:gz") as tar:
        tar.extractall(tmp_path, filter="data")
    # torchvision checks the real files' md5s; everything after that check is its own decoding code
    monkeypatch.setattr(torchvision_cifar, "check_integrity", lambda *args, **kwargs: True)
    archive = read_archive(archive_path)
    for train, split in ((True, archive.train), (False, archive.test)):
        dataset = torchvision_cifar.CIFAR100(str(tmp_path), train=train, download=False)
        np.testing.assert_array_equal(dataset.data, split.images)
        np.testing.assert_array_equal(np.asarray(dataset.targets), split.fine_labels)
        assert tuple(dataset.classes) == archive.fine_label_names


def test_rows_are_converted_from_chw_to_hwc(archive_path: Path, tmp_path: Path) -> None:
    rows = np.zeros((TRAIN_SIZE, 3072), dtype=np.uint8)
    row, column, channel = 5, 7, 2  # blue plane starts at byte 2048; pixel (5, 7) is 5 * 32 + 7 into it
    rows[0, channel * 1024 + row * 32 + column] = 255
    rows[1] = np.arange(3072) % 251

    def put_rows(contents: dict) -> None:
        contents[TRAIN_MEMBER]["data"] = rows

    images = read_archive(_rewrite(archive_path, tmp_path / ARCHIVE_NAME, put_rows)).train.images
    assert images[0, row, column, channel] == 255 and images[0].sum() == 255
    for row, column, channel in ((0, 0, 0), (31, 31, 2), (3, 30, 1)):
        assert images[1, row, column, channel] == (channel * 1024 + row * 32 + column) % 251


# --- errors -------------------------------------------------------------------------------------


def _assert_user_error(path: Path, *fragments: str) -> None:
    with pytest.raises(UserError) as caught:
        read_archive(path)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_truncated_archive_is_a_user_error(archive_path: Path, tmp_path: Path) -> None:
    truncated = tmp_path / ARCHIVE_NAME
    content = archive_path.read_bytes()
    truncated.write_bytes(content[: len(content) // 2])
    _assert_user_error(truncated, "not a readable gzip tar")


def test_non_gzip_file_and_missing_file_are_user_errors(tmp_path: Path) -> None:
    not_gzip = tmp_path / ARCHIVE_NAME
    not_gzip.write_text("<html>404</html>")
    _assert_user_error(not_gzip, "not a readable gzip tar")
    _assert_user_error(tmp_path / "absent.tar.gz", "not found")


def test_missing_meta_member_is_a_user_error(archive_path: Path, tmp_path: Path) -> None:
    path = _rewrite(archive_path, tmp_path / ARCHIVE_NAME, lambda contents: contents.pop(META_MEMBER))
    _assert_user_error(path, META_MEMBER)


def _set(member: str, key: str, value_of) -> object:
    def edit(contents: dict) -> None:
        contents[member][key] = value_of(contents[member][key])

    return edit


def _delete(member: str, key: str) -> object:
    return lambda contents: contents[member].pop(key)


@pytest.mark.parametrize(
    ("edit", "fragments"),
    [
        (_set(TRAIN_MEMBER, "data", lambda data: data[:, :100].copy()), (TRAIN_MEMBER, "'data'", "(300, 100)")),
        (_set(TEST_MEMBER, "data", lambda data: data.astype(np.float32)), (TEST_MEMBER, "'data'", "float32")),
        (_set(TEST_MEMBER, "data", lambda data: data.reshape(-1, 3, 32, 32)), (TEST_MEMBER, "'data'")),
        (_delete(TRAIN_MEMBER, "fine_labels"), (TRAIN_MEMBER, "'fine_labels'")),
        (_delete(META_MEMBER, "coarse_label_names"), (META_MEMBER, "'coarse_label_names'")),
        (_set(TRAIN_MEMBER, "fine_labels", lambda labels: labels[:-1]), (TRAIN_MEMBER, "299 labels for 300 images")),
        (
            _set(TEST_MEMBER, "coarse_labels", lambda labels: [20] + labels[1:]),
            (TEST_MEMBER, "'coarse_labels'", "[0, 19]"),
        ),
        (
            _set(TRAIN_MEMBER, "fine_labels", lambda labels: [-1] + labels[1:]),
            (TRAIN_MEMBER, "'fine_labels'", "[0, 99]"),
        ),
        (_set(TRAIN_MEMBER, "fine_labels", lambda labels: ["cat"] * len(labels)), (TRAIN_MEMBER, "integers")),
        (_set(META_MEMBER, "fine_label_names", lambda names: names[:10]), (META_MEMBER, "10 names, expected 100")),
    ],
    ids=[
        "data-shape",
        "data-dtype",
        "data-ndim",
        "missing-labels",
        "missing-names",
        "label-count",
        "coarse-range",
        "negative-label",
        "label-type",
        "name-count",
    ],
)
def test_malformed_member_is_a_user_error_naming_file_and_member(
    archive_path: Path, tmp_path: Path, edit, fragments: tuple[str, ...]
) -> None:
    _assert_user_error(_rewrite(archive_path, tmp_path / ARCHIVE_NAME, edit), *fragments)


def test_member_that_is_not_a_pickle_is_a_user_error(archive_path: Path, tmp_path: Path) -> None:
    path = _replace_member(archive_path, tmp_path / ARCHIVE_NAME, TEST_MEMBER, b"garbage")
    _assert_user_error(path, TEST_MEMBER, "not a readable pickle")


# --- crafted pickles: nothing but numpy's array globals is ever resolved ----------------------------


class _Shell:
    """Pickles as a call of os.system(command) when loaded."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))


@pytest.mark.parametrize("member", [META_MEMBER, TRAIN_MEMBER])
@pytest.mark.parametrize("protocol", [2, 4])  # GLOBAL and STACK_GLOBAL name a callable differently
def test_pickle_calling_os_system_runs_nothing_and_names_the_member(
    archive_path: Path, tmp_path: Path, member: str, protocol: int
) -> None:
    marker = tmp_path / "ran"
    payload = pickle.dumps({"fine_label_names": _Shell(f"touch {marker}")}, protocol=protocol)
    assert b"system" in payload  # the crafted pickle really names os.system (posix.system on Linux)
    path = _replace_member(archive_path, tmp_path / ARCHIVE_NAME, member, payload)
    _assert_user_error(path, member, "refused global", "system", "nothing was run")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("crafted", "fragment"),
    [
        (np.array([{"a": 1}], dtype=object), "not a plain numeric dtype"),  # object arrays hold arbitrary objects
        (np.zeros(3, dtype=[("x", "u1")]), "not a plain numeric dtype"),  # structured dtypes can nest objects
        (np.ma.masked_array([1, 2]), "refused global numpy.ma"),  # subclasses rebuild through their own code
    ],
    ids=["object-array", "structured-array", "array-subclass"],
)
def test_numpy_pickles_beyond_plain_arrays_are_refused(
    archive_path: Path, tmp_path: Path, crafted: np.ndarray, fragment: str
) -> None:
    payload = pickle.dumps({"data": crafted}, protocol=3)
    _assert_user_error(_replace_member(archive_path, tmp_path / ARCHIVE_NAME, TEST_MEMBER, payload), fragment)


def test_calling_the_array_class_itself_is_refused(archive_path: Path, tmp_path: Path) -> None:
    # {"data": numpy.ndarray((4, 3072))}: GLOBAL numpy.ndarray, then REDUCE calls it; numpy would allocate any
    # shape asked for, so the name may only reach _reconstruct as its argument
    payload = b"\x80\x02}U\x04datacnumpy\nndarray\nK\x04M\x00\x0c\x86\x85Rs."
    _assert_user_error(_replace_member(archive_path, tmp_path / ARCHIVE_NAME, TEST_MEMBER, payload), "not a readable")


def test_member_larger_than_the_format_allows_is_refused_before_it_is_read(archive_path: Path, tmp_path: Path) -> None:
    # 64 MiB of zeros gzip to about 64 KB; the meta member needs at most 64 KiB (a hundred and twenty names)
    path = _replace_member(archive_path, tmp_path / ARCHIVE_NAME, META_MEMBER, bytes(64 * 1024 * 1024))
    tracemalloc.start()
    try:
        _assert_user_error(path, META_MEMBER, "67108864 bytes", "more than the 65536")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # never read: reading it would hold its 64 MiB. tarfile's stream inflates one compressed chunk at a time, and
    # a chunk of zeros inflates about 1000x: 31 MiB measured for this member and for one twice its size
    assert peak < 48 * 1024 * 1024


# --- learnability -------------------------------------------------------------------------------


def test_classes_are_learnable_but_not_trivially(tmp_path: Path) -> None:
    path = tmp_path / ARCHIVE_NAME
    write_synthetic_archive(path, train_size=2000, test_size=500, seed=0)
    archive = read_archive(path)
    train_pixels = archive.train.images.reshape(2000, -1).astype(np.float32)  # (N, 3072)
    test_pixels = archive.test.images.reshape(500, -1).astype(np.float32)
    class_means = np.stack([train_pixels[archive.train.fine_labels == label].mean(0) for label in range(NUM_CLASSES)])
    squared_distances = (  # (500, 100)
        (test_pixels**2).sum(1, keepdims=True) - 2 * test_pixels @ class_means.T + (class_means**2).sum(1)
    )
    accuracy = (squared_distances.argmin(1) == archive.test.fine_labels).mean()
    assert 0.2 < accuracy < 0.95  # chance is 0.01


def test_writer_rejects_negative_sizes(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_synthetic_archive(tmp_path / ARCHIVE_NAME, train_size=-1, test_size=1, seed=0)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("key", "size"), [("train_size", TRAIN_IMAGES + 1), ("test_size", TEST_IMAGES + 1)])
def test_synthetic_sizes_beyond_the_real_archive_are_refused_before_writing(
    tmp_path: Path, key: str, size: int
) -> None:
    sizes = {"train_size": 10, "test_size": 10, key: size}
    data = parse_params(params_tree({"data": {"source": SYNTHETIC_SOURCE, "synthetic": {**sizes, "seed": 0}}})).data
    with pytest.raises(UserError, match=f"data.synthetic.{key} = {size} is more than the real archive's {size - 1}"):
        obtain_archive(data, tmp_path / ARCHIVE_NAME)
    assert not list(tmp_path.iterdir())
