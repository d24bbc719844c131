"""Fixtures shared by test files, the `pipeline` tier and how pytest-xdist workers share the machine."""

import dataclasses
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from tests.support.project import PIPELINE_TIMEOUT_SECONDS, WATCHED_STRATEGY, Repo, params_tree
from transfer import paths

ARCHIVE_URL_PATH = "/cifar-100-python.tar.gz"
# The checkout's own outputs: a test writes under a temporary directory, never here.
CHECKOUT_OUTPUTS = (paths.RESULTS_DIR, paths.PLOTS_DIR, paths.MODELS_DIR, paths.PREDICTIONS_DIR, paths.CHECKPOINTS_DIR)


PIPELINE = "pipeline"
# The two files that take longest, one for each xdist worker at the start (their e2e tests retrain most).
SLOWEST_FILES = ("test_pipeline_experiments.py", "test_pipeline_e2e.py")
HISTORY_POLL_SECONDS = 0.05  # an epoch of scratch on the test params takes seconds on 2 CPU cores
# What trains through a stage process: a test that starts one belongs to the pipeline tier. `dvc plots` or
# `dvc status` train nothing; these dvc commands can.
TRAINING_COMMANDS = ("stages.train", "torchrun", "torch.distributed.run", "benchmarks.throughput")
TRAINING_DVC_COMMANDS = ("repro", "exp", "queue")


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, each worker (and the processes it starts) gets its share of the CPU cores.

    Two workers each using every core would fight over them; torch's default is one thread per core.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = str(max(1, (os.cpu_count() or 1) // workers))
        for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[variable] = threads  # inherited by stage, dvc and torchrun processes
        torch.set_num_threads(int(threads))


def pytest_itemcollected(item: pytest.Item) -> None:
    """A test on the shared e2e repository trains through DVC: it belongs to the pipeline tier."""
    if "e2e_baseline" in item.fixturenames:
        item.add_marker(PIPELINE)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files with e2e tests first, then the other files with pipeline tests, then the rest.

    Under `--dist loadfile` a file is a unit of work: the slow files start first, so that none of them
    finishes last alone, and both workers build their e2e repository (a session fixture: one per worker)
    at the same time, at the start.
    """
    rank = {}  # 0, 1: the two slowest files; 2: a file with an e2e test, 3: with a pipeline test, 4: the rest
    for item in items:
        item_rank = 2 if "e2e_baseline" in item.fixturenames else 3 if item.get_closest_marker(PIPELINE) else 4
        if item.path.name in SLOWEST_FILES:
            item_rank = SLOWEST_FILES.index(item.path.name)
        rank[item.path] = min(rank.get(item.path, 4), item_rank)
    items.sort(key=lambda item: rank[item.path])  # stable: a file's tests stay together, in their order


@pytest.fixture(autouse=True)
def training_commands_only_in_the_pipeline_tier(request, monkeypatch):
    """Fail a test outside the `pipeline` tier that starts `dvc repro/exp/queue`, the train stage or torchrun.

    The fast tier (`-m "not pipeline"`) stays fast only while every such test carries the marker.
    """
    if request.node.get_closest_marker(PIPELINE):
        yield
        return
    real_init = subprocess.Popen.__init__

    def checked_init(self, arguments, *rest, **keywords):
        words = [arguments] if isinstance(arguments, (str, bytes, os.PathLike)) else list(arguments)
        names = [Path(os.fsdecode(word)).name for word in words]
        module = names[names.index("-m") + 1] if "-m" in names[:-1] else ""  # python -m <module>
        trains = (
            names[0] in TRAINING_COMMANDS
            or module in TRAINING_COMMANDS
            or (names[0] == "dvc" and len(names) > 1 and names[1] in TRAINING_DVC_COMMANDS)
        )
        if trains:
            pytest.fail(f"{request.node.nodeid} runs {' '.join(names[:3])}: mark it @pytest.mark.{PIPELINE}")
        real_init(self, arguments, *rest, **keywords)

    monkeypatch.setattr(subprocess.Popen, "__init__", checked_init)
    yield


def output_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under the checkout's output folders: relative path -> (size, modification time in ns)."""
    snapshot = {}
    for folder in CHECKOUT_OUTPUTS:
        for directory, _, files in os.walk(root / folder):
            for name in files:
                path = Path(directory) / name
                status = path.stat()
                snapshot[str(path.relative_to(root))] = (status.st_size, status.st_mtime_ns)
    return snapshot


@pytest.fixture(scope="session", autouse=True)
def checkout_outputs_untouched():
    """Fail the run if any test created, changed or deleted a file in the checkout's results, plots, models..."""
    before = output_snapshot(paths.PROJECT_ROOT)
    yield
    after = output_snapshot(paths.PROJECT_ROOT)
    changed = sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))
    if changed:
        pytest.fail(f"the tests changed the checkout's own outputs (write under tmp_path instead): {changed[:10]}")


@pytest.fixture
def start_http_server():
    """Start threaded HTTP servers on 127.0.0.1 (port chosen by the OS); all are stopped after the test.

    start_http_server(HandlerClass, **attributes) returns the server with the attributes set (the
    handler reads them as self.server.<name>), a `lock` for them, and `url`, where the archive is.
    """
    running = []

    def start(handler: type, **attributes) -> http.server.ThreadingHTTPServer:
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        httpd.lock = threading.Lock()
        httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}{ARCHIVE_URL_PATH}"
        for name, value in attributes.items():
            setattr(httpd, name, value)
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        running.append((httpd, thread))
        return httpd

    yield start
    for httpd, thread in running:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def workspace_state(repo: Repo) -> tuple[str, dict[str, tuple[int, int]]]:
    """HEAD and every workspace file's (size, modification time in ns): what a test may have changed.

    DVC's cache and temporary files are left out: reading commands (status, plots show) write there.
    """
    skipped = {repo.root / ".git", repo.root / ".dvc" / "cache", repo.root / ".dvc" / "tmp"}
    files = {}
    for directory, folders, names in os.walk(repo.root):
        folders[:] = [name for name in folders if Path(directory, name) not in skipped]
        for name in names:
            status = Path(directory, name).stat()
            files[os.path.join(directory, name)] = (status.st_size, status.st_mtime_ns)
    return repo.head(), files


@dataclasses.dataclass
class Baseline:
    """The shared end-to-end repository after one `dvc repro` of TEST_PARAMS, committed, and its workspace state.

    history_rows_seen: the row counts WATCHED_STRATEGY's seed-0 history.json showed while that repro ran.
    """

    repo: Repo
    commit: str
    state: tuple
    history_rows_seen: set[int]


def repro_watching_history(repo: Repo, log_path: Path) -> set[int]:
    """`dvc repro` of every stage, reading WATCHED_STRATEGY's seed-0 history.json while it runs: the row counts seen.

    Its output goes to log_path (a pipe could fill up while this loop reads the history).
    """
    history = repo.root / paths.seed_dir(WATCHED_STRATEGY, 0) / paths.HISTORY_FILE
    seen = set()
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "dvc"), "repro"],
            cwd=repo.root,
            env=repo.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + PIPELINE_TIMEOUT_SECONDS
        try:
            while process.poll() is None and time.monotonic() < deadline:
                try:
                    seen.add(len(json.loads(history.read_text())))
                except FileNotFoundError:
                    pass  # not written yet (or removed by DVC before the run); atomic writes never show half a file
                time.sleep(HISTORY_POLL_SECONDS)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
    if process.returncode != 0:
        pytest.fail(f"dvc repro exited {process.returncode}\n{log_path.read_text()}")
    return seen


@pytest.fixture(scope="session")
def e2e_baseline(tmp_path_factory) -> Baseline:
    """Built once per test session: a git + DVC copy of the project, `dvc repro` of TEST_PARAMS, committed."""
    folder = tmp_path_factory.mktemp("e2e")
    repo = Repo.create(folder / "project", params_tree())
    history_rows_seen = repro_watching_history(repo, folder / "repro.log")  # every stage of every strategy
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "baseline run")
    return Baseline(repo, repo.head(), workspace_state(repo), history_rows_seen)


@pytest.fixture
def e2e_repo(e2e_baseline) -> Repo:
    """The shared end-to-end repository as its baseline run; whatever a test changed is reset after it.

    A test that only reads the repository costs no reset (three commands): its files and HEAD are unchanged.
    """
    yield e2e_baseline.repo
    if workspace_state(e2e_baseline.repo) != e2e_baseline.state:
        e2e_baseline.repo.reset_to(e2e_baseline.commit)
        e2e_baseline.state = workspace_state(e2e_baseline.repo)  # restored files have new modification times
