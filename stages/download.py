"""Stage download: put the dataset's python archive in data/raw/ (fetched, copied, or generated).

Run as: python -m stages.download (reads data.dataset, data.source, data.md5 and data.synthetic from params.yaml).
With data.dataset: folder there is nothing to fetch: the prepare stage reads data.folder, and data/raw/
holds only a note saying so (DVC needs the stage's output to exist).
"""

import argparse

from transfer import paths
from transfer.atomic import atomic_path
from transfer.config import FOLDER_DATASET, load_params
from transfer.errors import run_stage
from transfer.sources.archive import obtain_archive


def main(argv: list[str] | None = None) -> None:
    """Command line: python -m stages.download."""
    argparse.ArgumentParser(prog="python -m stages.download", description=__doc__.splitlines()[0]).parse_args(argv)
    data = load_params().data
    if data.dataset == FOLDER_DATASET:
        with atomic_path(paths.NO_ARCHIVE_PATH) as temp_path:
            temp_path.write_text(NO_ARCHIVE_NOTE)
        print(f"download: nothing to fetch for data.dataset = {FOLDER_DATASET} (prepare reads data.folder)")
        return
    destination = paths.archive_path(data.dataset)
    obtain_archive(data, destination)
    print(f"download: {destination} from {data.source}")


NO_ARCHIVE_NOTE = (
    f"data.dataset is {FOLDER_DATASET}: the prepare stage reads the images in data.folder, so nothing was downloaded.\n"
)


if __name__ == "__main__":
    run_stage(main)
