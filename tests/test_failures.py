"""Each user mistake: exit 2, one `error:` line, nothing left behind.

Every stage's exit-code contract is checked once through the real command line (`python -m stages.<name>`,
a process importing torch: seconds); the other mistakes run the same main() in this process, through the
same run_stage wrapper, which is what decides the exit status and the error line.
"""

import hashlib
import http.server
import importlib
import re
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.project import copy_project, params_tree, write_params
from transfer import paths
from transfer.errors import run_stage
from transfer.sources.synthetic_archive import write_synthetic_archive

# A fetch retry notice on stderr (transfer/sources/fetch.py prints one before each new attempt); not an error line.
RETRY_NOTICE = re.compile(r"retrying \S+ in \d+\.\d s \(attempt \d+/\d+\): .+")
DEFAULT_ATTEMPTS = 5  # fetch()'s default, which the download stage uses
SERVED_ARCHIVE_SIZES = dict(train_size=200, test_size=100, seed=0)  # images: a few hundred KB, made in well under 1 s
STAGE_TIMEOUT_SECONDS = 180


# --- a project copy and its stages ------------------------------------------------------------


@dataclass
class Project:
    """A temporary copy of the project with its own params.yaml, where stages run as subprocesses."""

    root: Path

    def write_params(self, changes: dict) -> None:
        """The test params with changes merged in (nested keys as nested dicts)."""
        write_params(self.root, params_tree(changes))

    def run(self, stage: str, *arguments: str) -> subprocess.CompletedProcess:
        """python -m stages.<stage> arguments..., in the project copy."""
        return subprocess.run(
            [sys.executable, "-m", f"stages.{stage}", *arguments],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=STAGE_TIMEOUT_SECONDS,
        )

    def run_in_process(
        self, stage: str, monkeypatch, capsys, *arguments: str
    ) -> tuple[subprocess.CompletedProcess, list[float]]:
        """python -m stages.<stage> arguments... run in this process, with time.sleep recorded instead of slept.

        Returns the run as a CompletedProcess and the delays the stage asked to sleep, in order.
        """
        delays: list[float] = []
        monkeypatch.setattr("transfer.sources.fetch.time.sleep", delays.append)
        monkeypatch.chdir(self.root)
        # main() parses sys.argv: pytest's own arguments are not the stage's
        monkeypatch.setattr(sys, "argv", [stage, *arguments])
        capsys.readouterr()  # drop anything printed before
        try:
            run_stage(importlib.import_module(f"stages.{stage}").main)
            returncode = 0
        except SystemExit as exit_:
            returncode = exit_.code
        captured = capsys.readouterr()
        return subprocess.CompletedProcess([stage], returncode, captured.out, captured.err), delays

    def run_ok(self, stage: str, *arguments: str) -> subprocess.CompletedProcess:
        """Run a stage that must succeed."""
        result = self.run(stage, *arguments)
        assert result.returncode == 0, f"{stage} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        return result

    def exists(self, path: Path) -> bool:
        """Whether a project-relative path exists in the copy."""
        return (self.root / path).exists()

    def stray_files(self) -> list[str]:
        """Temporary (atomic_path's .<name>.*.tmp) or partial (fetch's .part) files anywhere outside the code."""
        return sorted(
            str(path.relative_to(self.root))
            for path in self.root.rglob("*")
            if path.is_file()
            and path.relative_to(self.root).parts[0] not in ("stages", "transfer")
            and path.name.endswith((".tmp", ".part"))
        )


def new_project(root: Path) -> Project:
    """The project copied to root (tests/support/project.py) with the test params."""
    return Project(copy_project(root, params_tree()))


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A fresh project copy with the test params."""
    return new_project(tmp_path / "project")


def error_line(result: subprocess.CompletedProcess, *, retry_notices: int = 0) -> str:
    """The stage's one error message (after "error: "), checking exit 2, no traceback, nothing else on stderr.

    retry_notices: how many fetch retry notices are expected on stderr before the error line.
    """
    stderr = result.stderr
    assert result.returncode == 2, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == retry_notices + 1, f"expected {retry_notices} retry notices and one error line, got:\n{stderr}"
    assert all(RETRY_NOTICE.fullmatch(line) for line in lines[:-1]), stderr
    assert lines[-1].startswith("error: "), stderr
    return lines[-1].removeprefix("error: ")


def assert_left_nothing(project: Project, *outputs: Path) -> None:
    """None of the stage's outputs exist and no temporary or partial file is anywhere."""
    assert [str(path) for path in outputs if project.exists(path)] == []
    assert project.stray_files() == []


# --- 1. params mistakes -----------------------------------------------------------------------


TRAIN_OUTPUTS = (paths.model_path("deep"), paths.results_dir("deep"), paths.checkpoint_dir("deep"))


def test_misspelt_key_names_it_and_suggests_the_real_one(project: Project, monkeypatch, capsys):
    project.write_params({"strategy": {"lrr": 0.1}})
    # In this process: the train command's exit status is checked by the diverging-loss test below.
    message = error_line(project.run_in_process("train", monkeypatch, capsys, "deep")[0])
    assert "'strategy.lrr'" in message
    assert "did you mean 'strategy.lr'?" in message
    assert_left_nothing(project, *TRAIN_OUTPUTS)


def test_unknown_strategy_on_the_command_line_lists_the_defined_ones(project: Project, monkeypatch, capsys):
    message = error_line(project.run_in_process("train", monkeypatch, capsys, "deeep")[0])
    assert "'deeep'" in message
    assert message.endswith(f"params.yaml defines: {', '.join(params_tree()['strategies'])}"), message
    assert_left_nothing(project, *TRAIN_OUTPUTS, paths.model_path("deeep"), paths.results_dir("deeep"))


def test_too_small_image_size_names_the_key_and_the_minimum(project: Project):
    project.write_params({"data": {"image_size": 16}})
    # Every stage validates all of params.yaml; download is the one `dvc repro` runs first (and loads no torch).
    message = error_line(project.run("download"))  # the download command's exit-code contract
    assert "data.image_size = 16" in message
    assert "use 32 to 512" in message
    assert_left_nothing(project, paths.ARCHIVE_PATH)


# --- 2. download over http ----------------------------------------------------------------------


class ArchiveHandler(http.server.BaseHTTPRequestHandler):
    """Serves server.payload at any path; the first server.fail_first requests get 503."""

    timeout = 5  # seconds: a stuck client cannot hang a server thread

    def do_GET(self) -> None:
        """Answer one GET: 503 while failures remain, else the whole payload."""
        with self.server.lock:
            self.server.requests += 1
            failing = self.server.requests <= self.server.fail_first
        if failing:
            self.send_error(503)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.server.payload)))
        self.end_headers()
        self.wfile.write(self.server.payload)

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


@pytest.fixture(scope="module")
def served_archive(tmp_path_factory) -> bytes:
    """The bytes of a small synthetic CIFAR-100 archive (train 200, test 100)."""
    path = tmp_path_factory.mktemp("served") / "cifar-100-python.tar.gz"
    write_synthetic_archive(path, **SERVED_ARCHIVE_SIZES)
    return path.read_bytes()


@pytest.fixture
def server(start_http_server, served_archive: bytes):
    """A local server of the archive; set server.fail_first to answer 503 first."""
    return start_http_server(ArchiveHandler, payload=served_archive, fail_first=0, requests=0)


def test_http_download_with_correct_md5_writes_the_served_bytes(
    project: Project, server, served_archive: bytes, monkeypatch, capsys
):
    project.write_params({"data": {"source": server.url, "md5": hashlib.md5(served_archive).hexdigest()}})
    result, _ = project.run_in_process("download", monkeypatch, capsys)
    assert result.returncode == 0 and result.stderr == ""
    assert (project.root / paths.ARCHIVE_PATH).read_bytes() == served_archive
    assert project.stray_files() == []
    assert server.requests == 1


def test_http_download_with_wrong_md5_names_both_digests_and_keeps_nothing(
    project: Project, server, served_archive: bytes, monkeypatch, capsys
):
    wrong_md5 = "0" * 32
    project.write_params({"data": {"source": server.url, "md5": wrong_md5}})
    message = error_line(project.run_in_process("download", monkeypatch, capsys)[0])
    assert f"expected md5 {wrong_md5}, got {hashlib.md5(served_archive).hexdigest()}" in message
    assert server.url in message
    assert_left_nothing(project, paths.ARCHIVE_PATH)
    assert server.requests == 1  # a wrong file is not fetched again


def test_http_download_retries_503_then_succeeds(project: Project, server, served_archive: bytes, monkeypatch, capsys):
    server.fail_first = 2
    project.write_params({"data": {"source": server.url, "md5": hashlib.md5(served_archive).hexdigest()}})
    result, delays = project.run_in_process("download", monkeypatch, capsys)
    assert result.returncode == 0, result.stderr
    assert delays == [1.0, 2.0]  # the default backoff, recorded rather than slept
    assert (project.root / paths.ARCHIVE_PATH).read_bytes() == served_archive
    assert server.requests == 3
    notices = result.stderr.splitlines()
    assert len(notices) == 2 and all(RETRY_NOTICE.fullmatch(line) and "HTTP 503" in line for line in notices), (
        result.stderr
    )
    assert project.stray_files() == []


def test_unreachable_server_gives_the_offline_hint(project: Project, monkeypatch, capsys):
    with socket.socket() as probe:  # a port that was free a moment ago, so nothing listens on it
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    project.write_params({"data": {"source": f"http://127.0.0.1:{closed_port}/cifar-100-python.tar.gz"}})
    result, delays = project.run_in_process("download", monkeypatch, capsys)
    assert delays == [1.0, 2.0, 4.0, 8.0]  # the default schedule: 5 attempts, recorded rather than slept
    message = error_line(result, retry_notices=DEFAULT_ATTEMPTS - 1)
    assert "cannot reach 127.0.0.1" in message
    assert "data.source" in message and "'synthetic'" in message
    assert_left_nothing(project, paths.ARCHIVE_PATH)


# --- 3. download from a local path ------------------------------------------------------------


def test_missing_local_source_names_the_path(project: Project, tmp_path: Path, monkeypatch, capsys):
    missing = tmp_path / "nowhere" / "cifar-100-python.tar.gz"
    project.write_params({"data": {"source": str(missing)}})
    message = error_line(project.run_in_process("download", monkeypatch, capsys)[0])
    assert f"data.source = '{missing}'" in message
    assert "http(s) URL" in message and "'synthetic'" in message
    assert_left_nothing(project, paths.ARCHIVE_PATH)


# --- 4. prepare -------------------------------------------------------------------------------


def place_archive(project: Project, served_archive: bytes, *, keep_bytes: int | None = None) -> None:
    """Put the synthetic archive (or its first keep_bytes bytes) where the download stage writes it."""
    archive = project.root / paths.ARCHIVE_PATH
    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.write_bytes(served_archive[:keep_bytes])


def test_truncated_archive_names_the_archive_and_writes_nothing(project: Project, served_archive: bytes):
    place_archive(project, served_archive, keep_bytes=len(served_archive) // 2)
    message = error_line(project.run("prepare"))  # the prepare command's exit-code contract
    assert message.startswith(f"{paths.ARCHIVE_PATH}: ")
    assert "truncated or corrupt" in message
    assert_left_nothing(project, paths.PREPARED_PATH)


def test_val_size_above_the_training_set_names_the_key_and_range(
    project: Project, served_archive: bytes, monkeypatch, capsys
):
    place_archive(project, served_archive)
    project.write_params({"data": {"val_size": 5000}})  # the real split's size; this archive has 200 training images
    message = error_line(project.run_in_process("prepare", monkeypatch, capsys)[0])
    train_size = SERVED_ARCHIVE_SIZES["train_size"]
    assert "data.val_size = 5000" in message
    assert f"use 1 to {train_size - 1}" in message and f"has {train_size} images" in message
    assert_left_nothing(project, paths.PREPARED_PATH)


# --- 5. weights -------------------------------------------------------------------------------


@dataclass
class GarbageWeightsRun:
    """The weights stage run once on a file of garbage bytes; two tests read its result."""

    project: Project
    garbage: Path
    result: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def garbage_weights_run(tmp_path_factory) -> GarbageWeightsRun:
    """python -m stages.weights with model.weights naming a 4 KB file of garbage bytes."""
    root = tmp_path_factory.mktemp("garbage_weights")
    garbage = root / "resnet18-garbage.pth"
    garbage.write_bytes(bytes(range(256)) * 16)
    project = new_project(root / "project")
    project.write_params({"model": {"weights": str(garbage)}})
    return GarbageWeightsRun(project, garbage, project.run("weights"))  # the weights command's exit-code contract


def test_garbage_weights_file_names_the_file_and_writes_nothing(garbage_weights_run: GarbageWeightsRun):
    message = error_line(garbage_weights_run.result)
    assert str(garbage_weights_run.garbage) in message
    assert "cannot be read" in message
    assert_left_nothing(garbage_weights_run.project, paths.PRETRAINED_PATH)


def test_garbage_weights_message_says_what_model_weights_accepts(garbage_weights_run: GarbageWeightsRun):
    message = error_line(garbage_weights_run.result)
    assert "weights_only" not in message  # advice to load an untrusted pickle is no fix
    assert "model.weights" in message and "'imagenet'" in message and "'random'" in message


# --- 6. train ---------------------------------------------------------------------------------


@pytest.mark.pipeline
def test_diverging_loss_stops_training_with_epoch_step_and_lr(project: Project):
    project.write_params(
        {
            # 700 generated training images less 100 for validation: 600 train, 9 full batches of 64
            "data": {
                "source": "synthetic",
                "val_size": 100,
                "synthetic": {"train_size": 700, "test_size": 100, "seed": 0},
            },
            "model": {"weights": "random"},
            "compute": {"device": "cpu"},
            "strategy": {"epochs": 2, "batch_size": 64, "lr": 1.0e12},
        }
    )
    project.run_ok("download")
    project.run_ok("prepare")
    message = error_line(project.run("train", "scratch"))  # the train command's exit-code contract
    assert message.startswith("train@scratch seed 0 epoch 1/2: the loss became "), message
    assert re.search(r"by step \d+ at lr 1e\+12;", message), message
    assert "strategy.lr" in message
    assert_left_nothing(
        project, paths.results_dir("scratch"), paths.model_path("scratch"), paths.checkpoint_dir("scratch")
    )
