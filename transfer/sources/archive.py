"""Obtain the archive the data.* params name (CIFAR-100 or CIFAR-10): fetched over http(s), copied, or generated."""

import shutil
from pathlib import Path

from transfer.atomic import atomic_path
from transfer.config import DataConfig
from transfer.datasets.cifar_format import TEST_IMAGES, TRAIN_IMAGES
from transfer.digest import Checksum, verify_checksum
from transfer.errors import UserError
from transfer.sources.fetch import fetch
from transfer.sources.synthetic_archive import write_synthetic_archive, write_synthetic_cifar10_archive

# The official archive is 169,001,437 bytes; a quarter more leaves room for a mirror's repacking at another
# gzip level, and still stops a server that streams without end long before it fills a disk.
MAX_ARCHIVE_BYTES = 169_001_437 * 5 // 4
OFFLINE_HINT = (
    "to work offline set data.source to a local copy of cifar-100-python.tar.gz, "
    "or to 'synthetic' (e.g. dvc exp run -S data.source=synthetic -S model.weights=random)"
)


def copy_local_archive(source: Path, checksum: Checksum, destination: Path) -> None:
    """Verify a local archive against data.md5, then copy it into place atomically."""
    if not source.is_file():
        raise UserError(f"data.source = '{source}' is not a file, an http(s) URL or 'synthetic'")
    try:
        verify_checksum(source, checksum)
    except UserError as error:
        raise UserError(
            f"{error}; use the official archive, or set data.md5 to this file's MD5 if it is meant to differ"
        ) from None
    with atomic_path(destination) as temp_path:
        shutil.copyfile(source, temp_path)


def obtain_archive(data: DataConfig, destination: Path) -> None:
    """Write the archive data.source names to destination."""
    if data.is_synthetic:
        _require_official_sizes_at_most(data)
        writer = write_synthetic_cifar10_archive if data.dataset == "cifar10" else write_synthetic_archive
        writer(
            destination,
            train_size=data.synthetic.train_size,
            test_size=data.synthetic.test_size,
            seed=data.synthetic.seed,
        )
    elif data.is_url:
        checksum = Checksum("md5", data.md5.lower())
        fetch(data.source, destination, checksum=checksum, max_bytes=MAX_ARCHIVE_BYTES, offline_hint=OFFLINE_HINT)
    else:
        copy_local_archive(Path(data.source).expanduser(), Checksum("md5", data.md5.lower()), destination)


def _require_official_sizes_at_most(data: DataConfig) -> None:
    """The stand-in keeps to the format, whose reader bounds each member by the official split sizes."""
    for key, size, most in (
        ("train_size", data.synthetic.train_size, TRAIN_IMAGES),
        ("test_size", data.synthetic.test_size, TEST_IMAGES),
    ):
        if size > most:
            raise UserError(f"data.synthetic.{key} = {size} is more than the real archive's {most}: use 1 to {most}")
