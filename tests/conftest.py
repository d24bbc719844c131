"""Fixtures shared by test files."""

import dataclasses
import http.server
import os
import threading
from pathlib import Path

import pytest

from tests.support.project import PIPELINE_TIMEOUT_SECONDS, Repo, params_tree
from transfer import paths

ARCHIVE_URL_PATH = "/cifar-100-python.tar.gz"
# The checkout's own outputs: a test writes under a temporary directory, never here.
CHECKOUT_OUTPUTS = (paths.RESULTS_DIR, paths.PLOTS_DIR, paths.MODELS_DIR, paths.PREDICTIONS_DIR, paths.CHECKPOINTS_DIR)


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


@dataclasses.dataclass(frozen=True)
class Baseline:
    """The shared end-to-end repository after one `dvc repro` of TEST_PARAMS, committed."""

    repo: Repo
    commit: str


@pytest.fixture(scope="session")
def e2e_baseline(tmp_path_factory) -> Baseline:
    """Built once per test session: a git + DVC copy of the project, `dvc repro` of TEST_PARAMS, committed."""
    repo = Repo.create(tmp_path_factory.mktemp("e2e") / "project", params_tree())
    repo.dvc("repro", timeout=PIPELINE_TIMEOUT_SECONDS)  # every stage of every strategy
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "baseline run")
    return Baseline(repo, repo.head())


@pytest.fixture
def e2e_repo(e2e_baseline) -> Repo:
    """The shared end-to-end repository, reset to its baseline run (whatever an earlier test changed)."""
    e2e_baseline.repo.reset_to(e2e_baseline.commit)
    return e2e_baseline.repo
