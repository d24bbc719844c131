"""Fixtures shared by test files, the `pipeline` tier and how pytest-xdist workers share the machine."""

import dataclasses
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from tests.support.project import PIPELINE_TIMEOUT_SECONDS, WATCHED_STRATEGY, Repo, params_tree
from transfer import paths

ARCHIVE_URL_PATH = "/cifar-100-python.tar.gz"
# The shared e2e build (e2e_baseline): the repository's folder, and the files that say the build ended.
PROJECT_FOLDER = "project"
SEEN_FILE = "seen.json"
FAILED_FILE = "failed.txt"
# The checkout's own outputs: a test writes under a temporary directory, never here.
CHECKOUT_OUTPUTS = (paths.RESULTS_DIR, paths.PLOTS_DIR, paths.MODELS_DIR, paths.PREDICTIONS_DIR, paths.CHECKPOINTS_DIR)


PIPELINE = "pipeline"
# The files that take longest, longest first (measured with --durations); the second needs no e2e repository,
# so it runs while the first file's worker builds it.
SLOWEST_FILES = (
    "test_pipeline_e2e.py",
    "test_dataset_pipelines.py",
    "test_pipeline_experiments.py",
    "test_interruption.py",
    "test_distributed.py",
)
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
    """The slowest files first, longest first, then the other files with pipeline tests, then the rest.

    `make test` hands whole files to the two xdist workers in this order (--dist loadfile with
    --no-loadscope-reorder; xdist would otherwise sort files by their number of tests), a new one to a
    worker as its file nears its end: long files start early, the many short ones fill in at the end, so
    neither worker finishes long after the other. The e2e file builds the shared e2e repository first;
    the other worker meanwhile runs files that do not need it.
    """
    rank = {}
    for item in items:
        if item.path.name in SLOWEST_FILES:
            item_rank = SLOWEST_FILES.index(item.path.name)
        else:
            item_rank = len(SLOWEST_FILES) + (0 if item.get_closest_marker(PIPELINE) else 1)
        rank[item.path] = min(rank.get(item.path, item_rank), item_rank)
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


def build_e2e_repository(folder: Path) -> None:
    """folder/project: a git + DVC copy of the project after `dvc repro` of TEST_PARAMS, committed; folder/seen.json:
    the history row counts seen while it trained. Written last, seen.json marks the build finished."""
    repo = Repo.create(folder / PROJECT_FOLDER, params_tree())
    history_rows_seen = repro_watching_history(repo, folder / "repro.log")  # every stage of every strategy
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "baseline run")
    (folder / SEEN_FILE).write_text(json.dumps(sorted(history_rows_seen)))


def copy_repository(source: Path, target: Path) -> None:
    """A working copy of a built repository: its own workspace and git, DVC's cache hard-linked.

    DVC never writes a cache file in place (they are read-only; new content is a new file), so workers may
    share them; DVC's state under .dvc/tmp is per copy and rebuilt by the first command.
    """
    shutil.copytree(source, target, symlinks=True, ignore=shutil.ignore_patterns("tmp", "cache"))
    shutil.copytree(source / ".dvc" / "cache", target / ".dvc" / "cache", copy_function=os.link)


@pytest.fixture(scope="session")
def e2e_baseline(tmp_path_factory, worker_id) -> Baseline:
    """The e2e repository, built once per test run, however many pytest-xdist workers share it.

    The first worker to need it runs `dvc repro` under a file lock in the run's temporary root (the same
    for every worker); then each worker works on a copy of its own, so a test on one worker never sees
    another's changes. A failed build fails the others at once with its log, rather than repeating it.
    """
    run_root = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        run_root = run_root.parent  # pytest-xdist: <run root>/popen-gw0, <run root>/popen-gw1, ...
    built = run_root / "e2e-built"
    with FileLock(run_root / "e2e-built.lock"):
        if (built / FAILED_FILE).exists():
            pytest.fail(f"building the e2e repository failed on another worker:\n{(built / FAILED_FILE).read_text()}")
        if not (built / SEEN_FILE).exists():
            shutil.rmtree(built, ignore_errors=True)
            built.mkdir()
            try:
                build_e2e_repository(built)
            except BaseException as failure:
                (built / FAILED_FILE).write_text(str(failure))
                raise
    repo = Repo(tmp_path_factory.mktemp("e2e") / PROJECT_FOLDER)
    copy_repository(built / PROJECT_FOLDER, repo.root)
    history_rows_seen = set(json.loads((built / SEEN_FILE).read_text()))
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
