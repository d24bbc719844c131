"""atomic_path: the mode a plain open() gives, durable before the rename, and no temporary file after SIGTERM."""

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from transfer import atomic
from transfer.atomic import atomic_path, write_json
from transfer.errors import SIGTERM_EXIT_STATUS


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_file_has_the_mode_the_umask_gives(tmp_path: Path, umask: int, mode: int):
    previous = os.umask(umask)
    try:
        write_json(tmp_path / "out.json", {"a": 1})
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out.json").stat().st_mode) == mode


def test_file_and_folder_are_fsynced_before_and_after_the_rename(tmp_path: Path, monkeypatch):
    synced: list[tuple[str, bool]] = []  # (what, whether the final name existed yet)
    final = tmp_path / "out.json"
    real_fsync = os.fsync

    def recording_fsync(descriptor: int) -> None:
        target = os.readlink(f"/proc/self/fd/{descriptor}")
        synced.append((target, final.exists()))
        real_fsync(descriptor)

    monkeypatch.setattr(atomic.os, "fsync", recording_fsync)
    write_json(final, [1, 2])
    assert len(synced) == 2
    (file_target, file_renamed), (folder_target, folder_renamed) = synced
    assert Path(file_target).name.startswith(".out.json.") and not file_renamed  # the temporary file, before
    assert folder_target == str(tmp_path) and folder_renamed  # the folder, after


# A stage that receives SIGTERM while its output is half written (as `dvc` or a scheduler stops it).
STAGE_KILLED_MID_WRITE = """
import os, signal, sys
from pathlib import Path
from transfer.atomic import atomic_path
from transfer.errors import run_stage

def main():
    with atomic_path(Path(sys.argv[1])) as temp_path:
        temp_path.write_text("half")
        os.kill(os.getpid(), signal.SIGTERM)
        temp_path.write_text("never reached")

run_stage(main)
"""


def test_sigterm_mid_write_leaves_no_temporary_file(tmp_path: Path):
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", STAGE_KILLED_MID_WRITE, str(tmp_path / "out.json")],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == SIGTERM_EXIT_STATUS == 128 + signal.SIGTERM, result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_failed_block_leaves_nothing(tmp_path: Path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out.bin") as temp_path:
            temp_path.write_bytes(b"partial")
            raise RuntimeError("disk on fire")
    assert list(tmp_path.iterdir()) == []
