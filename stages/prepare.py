"""Stage prepare: decode the archive or image folder into uint8 arrays and hold out stratified splits.

Run as: python -m stages.prepare (reads data.dataset, data.val_size and data.split_seed, and for a folder
data.folder, data.stored_size and data.test_size, from params.yaml).
"""

import argparse

import numpy as np

from transfer import paths
from transfer.atomic import atomic_path
from transfer.config import FOLDER_DATASET, DataConfig, load_params
from transfer.datasets.cifar_archive import read_archive
from transfer.datasets.image_folder import default_workers
from transfer.datasets.splitting import prepared_arrays, prepared_folder_arrays
from transfer.errors import run_stage


def main(argv: list[str] | None = None) -> None:
    """Command line: python -m stages.prepare."""
    argparse.ArgumentParser(prog="python -m stages.prepare", description=__doc__.splitlines()[0]).parse_args(argv)
    data = load_params().data  # first: a params mistake is reported before a missing archive
    arrays, note = read_dataset(data)
    with atomic_path(paths.PREPARED_PATH) as temp_path, open(temp_path, "wb") as file:
        # np.savez on an open file: given a path it would append its own ".npz" to the temporary name.
        np.savez(file, **arrays)
    print(
        f"prepare: {len(arrays['train_labels'])} train, {len(arrays['val_labels'])} validation, "
        f"{len(arrays['test_labels'])} test images of {len(arrays['class_names'])} classes at "
        f"{arrays['train_images'].shape[1]} px -> {paths.PREPARED_PATH}{note}"
    )


def read_dataset(data: DataConfig) -> tuple[dict, str]:
    """The prepared arrays of the dataset the params name, and a note for the summary line."""
    if data.dataset != FOLDER_DATASET:
        return prepared_arrays(read_archive(paths.archive_path(data.dataset), data.dataset), data), ""
    arrays, skipped = prepared_folder_arrays(data, default_workers())
    return arrays, f" ({skipped} files that are not images skipped)" if skipped else ""


if __name__ == "__main__":
    run_stage(main)
