"""What produced a result: library versions recorded beside weights and metrics."""

import platform
from importlib import metadata


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that shape a training result."""
    versions = {"python": platform.python_version()}
    for package in ("torch", "torchvision", "torchmetrics", "numpy", "dvc"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions
