"""Stage prepare: decode the archive or image folder into uint8 arrays and hold out stratified splits.

Run as: python -m stages.prepare (reads data.dataset, data.val_size and data.split_seed, and for a folder
data.folder, data.stored_size and data.test_size, from params.yaml).
python -m stages.prepare --check only checks data.folder's layout, decoding nothing and writing nothing: run it
before dvc repro (make repro does), since DVC hashes the folder first and hangs on a FIFO or a link to a device.
"""

import argparse
from pathlib import Path

import numpy as np

from transfer import paths
from transfer.atomic import atomic_path
from transfer.config import FOLDER_DATASET, DataConfig, load_params
from transfer.datasets.cifar_archive import read_archive
from transfer.datasets.image_folder import default_workers, find_images
from transfer.datasets.splitting import prepared_arrays, prepared_folder_arrays
from transfer.errors import run_stage
from transfer.printable import printable


def main(argv: list[str] | None = None) -> None:
    """Command line: python -m stages.prepare [--check]."""
    parser = argparse.ArgumentParser(prog="python -m stages.prepare", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="check data.folder's layout only (run before dvc repro)")
    arguments = parser.parse_args(argv)
    data = load_params().data  # first: a params mistake is reported before a missing archive
    if arguments.check:
        print(check_summary(data))
        return
    arrays, note = read_dataset(data)
    with atomic_path(paths.PREPARED_PATH) as temp_path, open(temp_path, "wb") as file:
        # np.savez on an open file: given a path it would append its own ".npz" to the temporary name.
        np.savez(file, **arrays)
    print(
        f"prepare: {len(arrays['train_labels'])} train, {len(arrays['val_labels'])} validation, "
        f"{len(arrays['test_labels'])} test images of {len(arrays['class_names'])} classes at "
        f"{arrays['train_images'].shape[1]} px -> {paths.PREPARED_PATH}{note}"
    )


def check_summary(data: DataConfig) -> str:
    """One line on what data.folder holds, once find_images has refused anything DVC or prepare cannot read."""
    if data.dataset != FOLDER_DATASET:
        return f"prepare --check: data.dataset = {data.dataset} reads no folder; nothing to check"
    layout = find_images(Path(data.folder).expanduser())
    test = f"{len(layout.test)} test images" if layout.test is not None else "no test/ folder"
    return (
        f"prepare --check: {printable(data.folder)}: {len(layout.train)} train images of "
        f"{len(layout.class_names)} classes, {test}, {len(layout.skipped)} other files; no special file, "
        "no link leaving the folder, nothing reached twice"
    )


def read_dataset(data: DataConfig) -> tuple[dict, str]:
    """The prepared arrays of the dataset the params name, and a note for the summary line."""
    if data.dataset != FOLDER_DATASET:
        return prepared_arrays(read_archive(paths.archive_path(data.dataset), data.dataset), data), ""
    arrays, skipped = prepared_folder_arrays(data, default_workers())
    return arrays, f" ({skipped} files that are not images skipped)" if skipped else ""


if __name__ == "__main__":
    run_stage(main)
