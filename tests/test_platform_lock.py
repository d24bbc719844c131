"""requirements.lock installs on every platform the project runs on: `make lock` marks platform-only pins,
`make lock-check` catches a lock that would fail on one of them.

Runs on a made-up project whose one dependency is Linux-only (like torch's CUDA libraries), installed
as metadata under tmp_path, and a local package index on 127.0.0.1 that has that dependency's wheels
for Linux only; no test reads the real index.
"""

import http.server
import json
import re

import pytest

from tools import platform_lock

# name -> (version, Requires-Dist lines, wheel file names on the index)
PACKAGES = {
    "lockcheck-app": (
        "1.0",
        ["lockcheck-core>=2", 'lockcheck-cuda==3.0; platform_system == "Linux"', 'lockcheck-fast; extra == "fast"'],
        ["lockcheck_app-1.0-py3-none-any.whl"],
    ),
    "lockcheck-core": (
        "2.0",
        [],
        [
            "lockcheck_core-2.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            "lockcheck_core-2.0-cp311-cp311-manylinux_2_28_aarch64.whl",
            "lockcheck_core-2.0-cp311-cp311-macosx_11_0_arm64.whl",
        ],
    ),
    "lockcheck-cuda": (
        "3.0",
        [],
        [
            "lockcheck_cuda-3.0-py3-none-manylinux_2_27_x86_64.whl",
            "lockcheck_cuda-3.0-py3-none-manylinux_2_27_aarch64.whl",
        ],
    ),
}


class IndexHandler(http.server.BaseHTTPRequestHandler):
    """PEP 691 JSON pages of PACKAGES."""

    def do_GET(self) -> None:
        name = self.path.strip("/").split("/")[-1]
        if not self.path.startswith("/simple/") or name not in PACKAGES:
            self.send_error(404)
            return
        files = [{"filename": filename, "url": filename, "hashes": {}} for filename in PACKAGES[name][2]]
        body = json.dumps({"meta": {"api-version": "1.0"}, "name": name, "files": files}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.pypi.simple.v1+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


@pytest.fixture
def made_up_project(tmp_path, monkeypatch):
    """requirements.txt and an unmarked lock of PACKAGES, with their metadata installed on sys.path."""
    site = tmp_path / "site"
    for name, (version, requires, _) in PACKAGES.items():
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
        lines += [f"Requires-Dist: {requirement}" for requirement in requires]
        (info / "METADATA").write_text("\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(site))
    (tmp_path / "requirements.txt").write_text("# the made-up project\nlockcheck-app==1.0\n")
    pins = "".join(f"{name}=={version}\n    # via something\n" for name, (version, _, _) in PACKAGES.items())
    (tmp_path / "requirements.lock").write_text(pins)
    return tmp_path


@pytest.fixture
def index_url(start_http_server) -> str:
    server = start_http_server(IndexHandler)
    return f"http://127.0.0.1:{server.server_address[1]}/simple"


def run(project, index_url: str, action: str) -> None:
    platform_lock.main(
        [action, str(project / "requirements.txt"), str(project / "requirements.lock"), "--index-url", index_url]
    )


def test_an_unmarked_linux_only_pin_fails_the_check_for_macos_only(made_up_project, index_url, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(made_up_project, index_url, "check")
    assert exit_info.value.code == 1
    output = capsys.readouterr().out
    assert "linux-x86_64: ok" in output and "linux-aarch64: ok" in output
    assert "macos-arm64: 1 problem(s)" in output
    assert "lockcheck-cuda==3.0 has no file" in output


def test_mark_gives_the_linux_only_pin_its_marker_and_then_every_platform_passes(made_up_project, index_url, capsys):
    run(made_up_project, index_url, "mark")
    lock = (made_up_project / "requirements.lock").read_text().splitlines()
    assert 'lockcheck-cuda==3.0 ; sys_platform == "linux"' in lock
    assert "lockcheck-core==2.0" in lock and "lockcheck-app==1.0" in lock  # needed everywhere: no marker
    assert "    # via something" in lock  # pip-compile's comments stay
    run(made_up_project, index_url, "check")
    assert capsys.readouterr().out.splitlines() == ["linux-x86_64: ok", "linux-aarch64: ok", "macos-arm64: ok"]


def test_a_missing_or_too_old_pin_is_named(made_up_project, index_url, capsys):
    lock = made_up_project / "requirements.lock"
    lock.write_text(lock.read_text().replace("lockcheck-cuda==3.0", "lockcheck-cuda==2.9"))
    lock.write_text("\n".join(line for line in lock.read_text().splitlines() if "lockcheck-core" not in line))
    with pytest.raises(SystemExit):
        run(made_up_project, index_url, "check")
    output = capsys.readouterr().out
    assert "lockcheck-core is needed (lockcheck-core>=2) but not pinned for macos-arm64" in output
    assert 'lockcheck-cuda==2.9 does not satisfy lockcheck-cuda==3.0; platform_system == "Linux"' in output


def test_an_unreachable_index_is_one_line_and_its_own_exit_status(made_up_project, index_url, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(made_up_project, index_url.replace("/simple", "/nowhere"), "check")
    assert exit_info.value.code == platform_lock.INDEX_UNREACHABLE  # .ci/run warns on it instead of failing
    error = capsys.readouterr().err.splitlines()
    assert len(error) == 1 and re.fullmatch(
        r"cannot read http://127\.0\.0\.1:\d+/nowhere/lockcheck-.*package index", error[0]
    )
