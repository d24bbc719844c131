"""Write outputs atomically so a failure never leaves a half-written file DVC could cache.

The file gets the mode a plain open() would (0644 under umask 022, readable by teammates; mkstemp's
own 0600 would not be), and is fsynced before the rename and its folder after, so a power loss
leaves the old file or the new one, never an empty one under the final name.
"""

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(final_path: Path) -> Iterator[Path]:
    """Yield a temporary path beside final_path; rename it into place only if the block succeeds."""
    final_path = Path(final_path)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=final_path.parent, prefix=f".{final_path.name}.", suffix=".tmp")
    os.close(handle)
    temp_path = Path(temp_name)
    try:
        yield temp_path
        os.chmod(temp_path, 0o666 & ~_current_umask())
        _fsync(temp_path, os.O_RDONLY)
        os.replace(temp_path, final_path)
        _fsync(final_path.parent, os.O_RDONLY | os.O_DIRECTORY)  # makes the rename itself durable
    finally:
        temp_path.unlink(missing_ok=True)


def _current_umask() -> int:
    """The process's umask (reading it means setting it; it is put back at once)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _fsync(path: Path, flags: int) -> None:
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_json(path: Path, data: object) -> None:
    """Write data as indented, key-ordered JSON, atomically, ending in a newline."""
    with atomic_path(path) as temp_path:
        temp_path.write_text(json.dumps(data, indent=2) + "\n")


def save_torch(obj: object, path: Path) -> None:
    """torch.save atomically, with the same bytes for the same object.

    torch.save names the records inside its zip after the file it is given; handing it the random
    temporary name would make every save differ, so it writes through an open file instead.
    """
    import torch  # here, not at the top: the stages that never save tensors skip importing torch

    with atomic_path(path) as temp_path, open(temp_path, "wb") as file:
        torch.save(obj, file)


def save_npz(path: Path, arrays: dict) -> None:
    """np.savez of named arrays, atomically; the same arrays give the same bytes (members carry a fixed date).

    Through an open file: given a path, np.savez would append its own ".npz" to the temporary name.
    """
    import numpy as np

    with atomic_path(path) as temp_path, open(temp_path, "wb") as file:
        np.savez(file, **arrays)
