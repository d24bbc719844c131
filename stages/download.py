"""Stage download: put the CIFAR-100 python archive in data/raw/ (fetched, copied, or generated).

Run as: python -m stages.download (reads data.source, data.md5 and data.synthetic from params.yaml).
"""

import argparse

from transfer import paths
from transfer.archive_source import obtain_archive
from transfer.config import load_params
from transfer.errors import run_stage


def main(argv: list[str] | None = None) -> None:
    """Command line: python -m stages.download."""
    argparse.ArgumentParser(prog="python -m stages.download", description=__doc__.splitlines()[0]).parse_args(argv)
    data = load_params().data
    obtain_archive(data, paths.ARCHIVE_PATH)
    print(f"download: {paths.ARCHIVE_PATH} from {data.source}")


if __name__ == "__main__":
    run_stage(main)
