"""The pages `dvc plots show` and `dvc plots diff` write, opened in headless Chromium without network:
every Vega chart draws from the vendored scripts, every strategy of params.yaml is in every chart.

Runs on the shared e2e repository, whose params.yaml adds a strategy (`probe`) that the committed
params.yaml lacks and whose dvc.yaml is the project's, untouched. Screenshots land in the pytest
temporary directory (printed; run with -s to see the paths), never in git.
"""

import json
import re
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from tests.support.project import Repo
from transfer.report import layout

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian package `chromium`; .ci/run installs it)"
)
BROWSER_TIMEOUT_SECONDS = 120
VIRTUAL_TIME_BUDGET_MS = 10000  # page time for the scripts to run; virtual, so no wall-clock wait
SCRIPT_SOURCE = re.compile(r"<script[^>]*\bsrc\s*=\s*[\"']?([^\"' >]+)", re.IGNORECASE)


class ConnectionCounter:
    """A TCP listener on 127.0.0.1 standing in as Chromium's proxy: any request the page makes arrives here."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.1)
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.count, daemon=True)
        self.thread.start()

    def count(self) -> None:
        """Accept and close connections until stopped, counting them."""
        while not self.stopping.is_set():
            try:
                connection, _ = self.server.accept()
            except TimeoutError:
                continue
            self.connections += 1
            connection.close()

    def stop(self) -> None:
        """Stop listening."""
        self.stopping.set()
        self.thread.join(timeout=5)
        self.server.close()


def chromium(page: Path, profile: Path, proxy_port: int, *mode: str) -> str:
    """Run headless Chromium on a local page with every request routed to proxy_port; its stdout."""
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",  # tests run as root in containers
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        f"--user-data-dir={profile}",
        f"--proxy-server=127.0.0.1:{proxy_port}",
        "--proxy-bypass-list=<-loopback>",  # loopback goes through the proxy too, so it is counted
        "--host-resolver-rules=MAP * ~NOTFOUND",  # and no name resolves
        f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}",
        *mode,
        page.resolve().as_uri(),
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 0, f"chromium exited {result.returncode}\n{result.stderr[-3000:]}"
    return result.stdout


def render_offline(page: Path, workdir: Path) -> str:
    """The page's DOM after its scripts ran in Chromium without network; fails if it made any request.

    Also saves a screenshot next to the page and prints its path.
    """
    counter = ConnectionCounter()
    try:
        dom = chromium(page, workdir / "profile-dom", counter.port, "--dump-dom")
        screenshot = page.with_suffix(".png")
        chromium(page, workdir / "profile-shot", counter.port, f"--screenshot={screenshot}", "--window-size=1400,4000")
    finally:
        counter.stop()
    assert counter.connections == 0, f"the page made {counter.connections} network request(s)"
    assert screenshot.stat().st_size > 0
    print(f"screenshot: {screenshot}")
    return dom


def vega_plots(repo: Repo, *command: str) -> dict[str, list[dict]]:
    """plot id -> data rows, of each Vega plot in the JSON output of a `dvc plots` command."""
    result = subprocess.run(
        [str(Path(repo.env["PATH"].split(":")[0]) / "dvc"), *command, "--json"],
        cwd=repo.root,
        env=repo.env,
        capture_output=True,
        text=True,
        timeout=BROWSER_TIMEOUT_SECONDS,
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    return {
        plot_id: [row for entry in entries for row in entry["content"]["data"]["values"]]
        for plot_id, entries in shown["data"].items()
        if entries[0]["type"] == "vega"
    }


def assert_every_chart_drawn(html: str, dom: str, plot_count: int) -> None:
    """No script loads from the network, and each of the page's plot_count Vega embeds holds drawn marks."""
    sources = SCRIPT_SOURCE.findall(html)
    assert not [source for source in sources if re.match(r"(https?:)?//", source)], sources
    embeds = re.split(r'<div[^>]*class="vega-embed', dom)[1:]
    assert len(embeds) == plot_count, f"{len(embeds)} of {plot_count} Vega charts embedded"
    for embed in embeds:
        assert re.search(r'<(canvas|svg)[^>]*class="marks"', embed), embed[:300]


def test_show_page_draws_every_strategy_offline(e2e_repo, tmp_path):
    strategies = set(e2e_repo.strategies())
    assert "probe" in strategies  # added in params.yaml only: dvc.yaml is the project's
    charts = vega_plots(e2e_repo, "plots", "show")
    declared = [entry for entry in yaml.safe_load((e2e_repo.root / "dvc.yaml").read_text())["plots"]]
    assert len(charts) == sum(isinstance(entry, dict) for entry in declared)  # every Vega plot of dvc.yaml
    for plot_id, rows in charts.items():
        assert {row["strategy"] for row in rows} == strategies, plot_id
    report = (e2e_repo.root / layout.REPORT_PATH).read_text()
    for name in strategies:
        assert f"| {name} |" in report and f"### {name}\n" in report, name
        assert (e2e_repo.root / layout.confusion_figure_path(name)).is_file(), name
    e2e_repo.dvc("plots", "show", "-o", str(tmp_path / "show"))
    page = tmp_path / "show" / "index.html"
    assert_every_chart_drawn(page.read_text(), render_offline(page, tmp_path), len(charts))


def test_diff_page_of_two_experiments_tells_strategies_and_revisions_apart(e2e_repo, tmp_path):
    # A verdict param: only the plots stage reruns, no training; every strategy is in both revisions.
    output = e2e_repo.dvc("exp", "run", "-n", "wider-margin", "-S", "report.equivalence_margin=0.02")
    assert "Running stage 'plots'" in output and "Running stage 'train@" not in output, output
    e2e_repo.run("git", "reset", "-q", "--hard")  # the baseline's workspace; the experiment stays as a ref
    e2e_repo.dvc("checkout", "--force")
    revisions = ("HEAD", "wider-margin")
    charts = vega_plots(e2e_repo, "plots", "diff", *revisions)
    strategies = set(e2e_repo.strategies())
    for plot_id, rows in charts.items():
        series = {(row["rev"], row["strategy"]) for row in rows}
        assert series == {(rev, name) for rev in revisions for name in strategies}, plot_id
    e2e_repo.dvc("plots", "diff", *revisions, "-o", str(tmp_path / "diff"))
    page = tmp_path / "diff" / "index.html"
    html = page.read_text()
    assert '"strokeDash": {"field": "rev"' in html  # revisions dashed apart; strategies coloured
    assert_every_chart_drawn(html, render_offline(page, tmp_path), len(charts))
