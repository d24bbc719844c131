"""Read a folder dataset: train/<class>/* (and optionally test/<class>/*) into square uint8 arrays.

Classes are the folder names under train/, in sorted order (label i is the i-th name). Images are
found recursively inside each class folder, hidden files and folders (.DS_Store,
.ipynb_checkpoints) left out; a file with another suffix is counted and named in the summary, never
read. Every image is decoded (transfer/datasets/image_decode.py) by a pool of processes, one per core, in
chunks written straight into one preallocated array: memory peaks at the arrays plus a few chunks.
An unreadable image stops the stage with the count and the first names: training on a silently
partial set would answer another question.

Before any image is listed, all of data.folder is checked (check_folder): an unreadable folder, a
special file (FIFO, device, socket: DVC hangs hashing one), a link resolving outside data.folder, or
a broken link is refused naming it, hidden entries included, since DVC hashes those too. Links inside
data.folder are followed, but a file or folder reached by two paths (a link, a hard link) is refused
naming both: it would be one image with two labels, or the same image in two splits.
"""

import os
import stat
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

from transfer.datasets.image_decode import allocate_images, decode_square
from transfer.errors import UserError
from transfer.printable import printable

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
TRAIN_DIR, TEST_DIR = "train", "test"
CHUNK_IMAGES = 64  # per task: large enough that pickling a chunk costs little beside decoding it
SHOWN_PROBLEMS = 3  # unreadable files named in the error; the count says how many more
SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


@dataclass(frozen=True)
class LabelledFiles:
    """Image files of one split and their class indices, in a fixed order (class, then path)."""

    files: tuple[Path, ...]
    labels: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.files)


@dataclass(frozen=True)
class FolderLayout:
    """What a folder dataset holds: the class names, train/'s images, test/'s (None without test/), stray files."""

    class_names: tuple[str, ...]
    train: LabelledFiles
    test: LabelledFiles | None
    skipped: tuple[Path, ...]  # files with a suffix outside IMAGE_SUFFIXES


def find_images(root: Path) -> FolderLayout:
    """The classes and image files under root, or a UserError naming what is wrong with the layout."""
    shown = printable(str(root))
    if not root.is_dir():
        raise UserError(f"data.folder = {shown} is not a folder: give one holding train/<class>/ image folders")
    train_root = root / TRAIN_DIR
    if not train_root.is_dir():
        raise UserError(
            f"{shown} has no {TRAIN_DIR}/ folder: put each class's images in {shown}/{TRAIN_DIR}/<class>/ "
            f"(and optionally test images in {shown}/{TEST_DIR}/<class>/)"
        )
    check_folder(root)
    seen: dict[tuple[int, int], Path] = {}  # (device, inode) of every folder and image listed -> its first path
    class_names = _class_folders(train_root)
    if len(class_names) < 2:
        raise UserError(
            f"{printable(str(train_root))} has {len(class_names)} class folder(s) {list(class_names)}: "
            "a classifier needs at least two, one folder per class"
        )
    train, train_skipped = _labelled_files(train_root, class_names, class_names, seen)
    test, test_skipped = None, ()
    test_root = root / TEST_DIR
    if test_root.is_dir():
        test_classes = _class_folders(test_root)
        if not test_classes:  # refused, not taken as absent: an emptied test/ would silently change what is tested
            raise UserError(
                f"{printable(test_root)} holds no class folder: put test images in {printable(test_root)}/<class>/, "
                f"or remove {TEST_DIR}/ to hold out data.test_size images of {TRAIN_DIR}/ instead"
            )
        unknown = [name for name in test_classes if name not in class_names]
        if unknown:
            raise UserError(
                f"{printable(str(test_root / unknown[0]))}: class {printable(unknown[0])!r} is not in "
                f"{printable(str(train_root))}/ (its classes: {_listed(class_names)}); a test class must be trained on"
            )
        test, test_skipped = _labelled_files(test_root, test_classes, class_names, seen)
    return FolderLayout(class_names, train, test, train_skipped + test_skipped)


def _class_folders(split_root: Path) -> tuple[str, ...]:
    """Sorted names of the class folders of a split; a loose file or an unprintable name is a UserError."""
    names = []
    for entry in sorted(split_root.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            raise UserError(
                f"{printable(str(entry))} is not in a class folder: put each image in "
                f"{printable(str(split_root))}/<class>/"
            )
        if not entry.name.isprintable():
            raise UserError(f"{printable(str(entry))}: a class folder's name becomes a label; rename it printably")
        names.append(entry.name)
    return tuple(names)


def _labelled_files(
    split_root: Path, present: tuple[str, ...], class_names: tuple[str, ...], seen: dict
) -> tuple[LabelledFiles, tuple[Path, ...]]:
    """Every image of the present class folders labelled by its index in class_names, and the skipped files."""
    files, labels, skipped = [], [], []
    for name in present:
        images, others = _files_under(split_root / name, seen)
        if not images:
            raise UserError(
                f"{printable(str(split_root / name))} holds no image ({', '.join(IMAGE_SUFFIXES)}): "
                "add images or remove the folder"
            )
        files += images
        labels += [class_names.index(name)] * len(images)
        skipped += others
    return LabelledFiles(tuple(files), np.array(labels, dtype=np.int64)), tuple(skipped)


def _files_under(folder: Path, seen: dict) -> tuple[list[Path], list[Path]]:
    """(image files, other files) under folder, recursively and sorted, hidden entries left out.

    Links are followed (check_folder has made sure they stay inside data.folder); seen catches a folder or
    file reached a second time, which also ends a link cycle.
    """
    images, others = [], []
    for directory, subdirectories, names in os.walk(folder, onerror=_unreadable, followlinks=True):
        _claim(Path(directory), seen)
        subdirectories[:] = sorted(name for name in subdirectories if not name.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = Path(directory) / name
            if path.suffix.lower() in IMAGE_SUFFIXES:
                _claim(path, seen)
                images.append(path)
            else:
                others.append(path)
    return images, others


def _claim(path: Path, seen: dict) -> None:
    """Record path's file identity; a UserError naming both paths if another path reached it already."""
    info = path.stat()
    first = seen.setdefault((info.st_dev, info.st_ino), path)
    if first != path:
        raise UserError(
            f"{printable(path)} and {printable(first)} are the same {'folder' if path.is_dir() else 'file'} "
            "(a link or hard link): one image would be read twice, perhaps with two labels; keep one of them"
        )


def _unreadable(error: OSError) -> None:
    """os.walk's onerror: a folder that cannot be listed stops the stage instead of being skipped."""
    raise UserError(
        f"{printable(error.filename)}: cannot list this folder ({error.strerror}): its images would be silently "
        "left out; make it readable or remove it"
    )


def check_folder(root: Path) -> int:
    """How many entries data.folder holds, after refusing what would hang DVC or leave the folder.

    Every entry counts, hidden ones too (DVC hashes them): an unreadable folder, a FIFO, device or socket,
    a broken link, or a link resolving outside root is a UserError naming it. Links are not followed here;
    a link's target inside root is checked where it lies.
    """
    inside = root.resolve()
    entries = 0
    for directory, subdirectories, names in os.walk(root, onerror=_unreadable):
        for name in subdirectories + names:
            _check_entry(Path(directory) / name, inside)
            entries += 1
    return entries


def _check_entry(path: Path, inside: Path) -> None:
    """A UserError if path is a special file, a broken link or a link leaving the folder inside."""
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode):
        try:
            target = path.resolve()
        except RuntimeError:  # Python 3.11's resolve() on a link loop
            raise UserError(f"{printable(path)} is a link that loops back on itself; remove it") from None
        if not target.is_relative_to(inside):
            raise UserError(
                f"{printable(path)} is a link to {printable(target)}, outside data.folder = {printable(inside)}: "
                "DVC does not track what it points to, so a change there would not rerun prepare; "
                "copy the files into the folder or remove the link"
            )
        if not target.exists():
            raise UserError(f"{printable(path)} is a broken link (to {printable(target)}); remove it")
        return
    kind = next((name for is_kind, name in SPECIAL_KINDS if is_kind(mode)), None)
    if kind is not None:
        raise UserError(
            f"{printable(path)} is {kind}, not a file: DVC would hang hashing it (and prepare cannot read it); "
            "remove it from data.folder"
        )


def _listed(names: tuple[str, ...]) -> str:
    shown = ", ".join(printable(name) for name in names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


# ---------------------------------------------------------------------------------------------
# Decoding


def decode_all(files: tuple[Path, ...], size: int, workers: int, description: str) -> np.ndarray:
    """(N, size, size, 3) uint8 of every file in order; a UserError counting and naming the unreadable ones."""
    images = allocate_images(len(files), size, "prepare", "lower data.stored_size or use fewer images")
    problems: list[str] = []
    chunks = [(start, files[start : start + CHUNK_IMAGES], size) for start in range(0, len(files), CHUNK_IMAGES)]
    with tqdm(total=len(files), desc=description, unit="img", mininterval=1.0, disable=None) as progress:
        for start, decoded, chunk_problems in _decoded_chunks(chunks, workers):
            images[start : start + len(decoded)] = decoded
            problems += chunk_problems
            progress.update(len(decoded))
    if problems:
        more = f" and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
        raise UserError(
            f"{len(problems)} of {len(files)} images are unreadable, nothing was prepared: "
            f"{'; '.join(problems[:SHOWN_PROBLEMS])}{more}; repair or remove them"
        )
    return images


def _decoded_chunks(chunks: list, workers: int) -> Iterator[tuple[int, np.ndarray, list[str]]]:
    """Each chunk decoded, in order: in this process for one worker, else by a pool of worker processes."""
    if workers <= 1 or len(chunks) <= 1:
        yield from map(_decode_chunk, chunks)
        return
    # forkserver, not fork: a caller may hold threads (torch's, in tests) that a forked child would inherit locked
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("forkserver")) as pool:
        yield from pool.map(_decode_chunk, chunks)


def _decode_chunk(chunk: tuple[int, tuple[Path, ...], int]) -> tuple[int, np.ndarray, list[str]]:
    """(start, decoded images, problem lines) of one chunk; an unreadable image's slot stays zero."""
    start, files, size = chunk
    decoded = np.zeros((len(files), size, size, 3), dtype=np.uint8)
    problems = []
    for index, path in enumerate(files):
        try:
            decoded[index] = decode_square(path, size)
        except UserError as error:
            problems.append(str(error))
    return start, decoded, problems


def default_workers() -> int:
    """The cores this process may run on: decoding is CPU-bound and each worker holds only a chunk."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
