"""Turn the decoded archive or image folder into the prepared splits: stratified hold-outs and the superclass map."""

from pathlib import Path

import numpy as np

from transfer import paths
from transfer.config import DataConfig
from transfer.datasets.cifar_archive import CifarArchive
from transfer.datasets.image_folder import LabelledFiles, decode_all, find_images
from transfer.errors import UserError
from transfer.printable import printable

# The folder's test hold-out draws from its own stream of data.split_seed, apart from the validation draw's.
TEST_DRAW = 1


def stratified_split(
    labels: np.ndarray, val_size: int, seed: int | list[int], key: str = "data.val_size"
) -> tuple[np.ndarray, np.ndarray]:
    """(train_indices, val_indices): val_size images drawn so each class keeps its share, seeded.

    Each class gets floor(val_size * its share); the images left over go to the classes with
    the largest remainders (ties to the lower class index), so the total is exactly val_size.
    key names the setting in the error (the test hold-out of a folder is drawn the same way).
    """
    if not 0 < val_size < len(labels):
        raise UserError(
            f"{key} = {val_size} is invalid: use 1 to {len(labels) - 1} (the training set has {len(labels)} images)"
        )
    classes, counts = np.unique(labels, return_counts=True)
    exact_quota = val_size * counts / len(labels)
    quota = np.floor(exact_quota).astype(np.int64)
    leftover = val_size - quota.sum()
    by_remainder = np.lexsort((classes, -(exact_quota - quota)))  # largest remainder first, then class index
    quota[by_remainder[:leftover]] += 1
    rng = np.random.default_rng(seed)
    val_parts = [rng.permutation(np.flatnonzero(labels == label))[:count] for label, count in zip(classes, quota)]
    val_indices = np.sort(np.concatenate(val_parts))
    train_indices = np.setdiff1d(np.arange(len(labels)), val_indices)
    return train_indices, val_indices


def fine_to_coarse(fine_labels: np.ndarray, coarse_labels: np.ndarray, num_fine: int) -> np.ndarray:
    """(num_fine,) int64: the superclass of each fine class, -1 for a class with no image.

    In CIFAR-100 every fine class lies in exactly one of the 20 superclasses; an archive that says
    otherwise is damaged, and superclass accuracy would mean nothing.
    """
    mapping = np.full(num_fine, -1, dtype=np.int64)
    for fine in np.unique(fine_labels):
        superclasses = np.unique(coarse_labels[fine_labels == fine])
        if len(superclasses) != 1:
            raise UserError(
                f"{paths.ARCHIVE_PATH}: fine class {fine} has images in superclasses {superclasses.tolist()}; "
                "CIFAR-100 puts each class in one superclass; download the archive again (dvc repro --force download)"
            )
        mapping[fine] = superclasses[0]
    return mapping


def prepared_arrays(archive: CifarArchive, data: DataConfig) -> dict[str, np.ndarray]:
    """The arrays of data/prepared/cifar100.npz (what transfer.training.prepared_data.load_prepared reads), by name."""
    train, test = archive.train, archive.test
    train_indices, val_indices = stratified_split(train.fine_labels, data.val_size, data.split_seed)
    if train.coarse_labels is None:  # CIFAR-10: no superclasses, so every class maps to -1
        superclasses = np.full(len(archive.fine_label_names), -1, dtype=np.int64)
    else:
        superclasses = fine_to_coarse(
            np.concatenate([train.fine_labels, test.fine_labels]),
            np.concatenate([train.coarse_labels, test.coarse_labels]),
            len(archive.fine_label_names),
        )
    return {
        "train_images": train.images[train_indices],
        "train_labels": train.fine_labels[train_indices],
        "val_images": train.images[val_indices],
        "val_labels": train.fine_labels[val_indices],
        "test_images": test.images,
        "test_labels": test.fine_labels,
        "class_names": np.array(archive.fine_label_names),
        "fine_to_coarse": superclasses,
        "coarse_class_names": np.array(archive.coarse_label_names, dtype=str),
    }


def prepared_folder_arrays(data: DataConfig, workers: int) -> tuple[dict[str, np.ndarray], int]:
    """The prepared arrays of a folder dataset (same names as prepared_arrays'), and how many files were skipped.

    Without a test/ folder, data.test_size images of train/ are held out first (stratified, seeded);
    the validation split is then drawn from the rest exactly as for CIFAR.
    """
    layout = find_images(Path(data.folder).expanduser())
    train, test = layout.train, layout.test
    if test is None:
        kept, held_out = stratified_split(train.labels, data.test_size, [data.split_seed, TEST_DRAW], "data.test_size")
        train, test = _subset(train, kept), _subset(train, held_out)
    train_indices, val_indices = stratified_split(train.labels, data.val_size, data.split_seed)
    _require_every_class(layout.class_names, train.labels[train_indices], "training", "add images of it")
    _require_every_class(
        layout.class_names, train.labels[val_indices], "validation", "raise data.val_size or add images of it"
    )
    # Decoded in their final order into one array, so the splits are views of it: memory holds each image once.
    # One pass over every file, so an unreadable-image error counts them all.
    in_order = _subset(train, np.concatenate([train_indices, val_indices]))
    images = decode_all(in_order.files + test.files, data.stored_size, workers, "prepare: decoding")
    num_train, num_train_and_val = len(train_indices), len(in_order)
    arrays = {
        "train_images": images[:num_train],
        "train_labels": in_order.labels[:num_train],
        "val_images": images[num_train:num_train_and_val],
        "val_labels": in_order.labels[num_train:],
        "test_images": images[num_train_and_val:],
        "test_labels": test.labels,
        "class_names": np.array(layout.class_names),
        "fine_to_coarse": np.full(len(layout.class_names), -1, dtype=np.int64),  # a folder has no superclasses
        "coarse_class_names": np.array([], dtype=str),
    }
    return arrays, len(layout.skipped)


def _require_every_class(class_names: tuple[str, ...], labels: np.ndarray, split: str, advice: str) -> None:
    """A UserError naming the first class with no image in the split: it could never be learnt, or never scored."""
    counts = np.bincount(labels, minlength=len(class_names))
    empty = [name for name, count in zip(class_names, counts, strict=True) if count == 0]
    if empty:
        more = f" (and {len(empty) - 1} more)" if len(empty) > 1 else ""
        raise UserError(
            f"class {printable(empty[0])!r}{more} has no {split} image after the split of {len(labels)} {split} "
            f"images: {advice}"
        )


def _subset(files: LabelledFiles, indices: np.ndarray) -> LabelledFiles:
    return LabelledFiles(tuple(files.files[index] for index in indices), files.labels[indices])
