"""Stage prepare: decode the archive into uint8 arrays and hold out a stratified validation split.

Run as: python -m stages.prepare (reads data.dataset, data.val_size and data.split_seed from params.yaml).
"""

import argparse

import numpy as np

from transfer import paths
from transfer.atomic import atomic_path
from transfer.cifar_archive import read_archive
from transfer.config import load_params
from transfer.errors import run_stage
from transfer.splitting import prepared_arrays


def main(argv: list[str] | None = None) -> None:
    """Command line: python -m stages.prepare."""
    argparse.ArgumentParser(prog="python -m stages.prepare", description=__doc__.splitlines()[0]).parse_args(argv)
    data = load_params().data  # first: a params mistake is reported before a missing archive
    arrays = prepared_arrays(read_archive(paths.ARCHIVE_PATH, data.dataset), data)
    with atomic_path(paths.PREPARED_PATH) as temp_path, open(temp_path, "wb") as file:
        # np.savez on an open file: given a path it would append its own ".npz" to the temporary name.
        np.savez(file, **arrays)
    print(
        f"prepare: {len(arrays['train_labels'])} train, {len(arrays['val_labels'])} validation, "
        f"{len(arrays['test_labels'])} test images -> {paths.PREPARED_PATH}"
    )


if __name__ == "__main__":
    run_stage(main)
