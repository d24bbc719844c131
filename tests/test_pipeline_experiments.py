"""The experiments of the shared e2e repository that retrain most: a new shared lr, and a queue of two.

They live apart from tests/test_pipeline_e2e.py so that pytest-xdist (`make test`, one file at a time) runs
them on the other worker, beside the rest of the end-to-end tests, each worker on its own copy of the e2e repository.
"""

import json
import re
import time

import pytest

from tests.support.project import EXPERIMENT_TARGET, PIPELINE_TIMEOUT_SECONDS, Repo, processes_under
from tests.test_pipeline_e2e import (
    CHEAP_STRATEGY,
    assert_ran_only,
    assert_readable_exp_show,
    experiment_name,
    find_revisions,
)
from transfer import paths
from transfer.report import layout

QUEUE_TIMEOUT_SECONDS = 600
QUEUE_STOP_SECONDS = 60


def test_exp_run_with_new_lr_retrains_only_the_train_stages_and_shows_in_exp_show(e2e_repo: Repo):
    strategies = e2e_repo.strategies()
    baseline = e2e_repo.metrics()
    new_lr = e2e_repo.params()["strategy"]["lr"] * 0.6
    output = e2e_repo.dvc(
        "exp", "run", "-S", f"strategy.lr={new_lr}", EXPERIMENT_TARGET, timeout=PIPELINE_TIMEOUT_SECONDS
    )
    name = experiment_name(output)
    assert_ran_only(output, {f"train@{strategy}" for strategy in strategies} | {"plots"}, strategies)
    changed = e2e_repo.metrics()
    own_lr = {name for name in strategies if "lr" in e2e_repo.params()["strategies"][name]}
    assert own_lr and own_lr != set(strategies)  # the test params have both kinds
    for strategy in strategies:
        if strategy in own_lr:  # its own rate replaces the shared one: the same run again, the same bytes
            assert changed[strategy] == baseline[strategy], strategy
            continue
        assert changed[strategy]["test_loss"] != baseline[strategy]["test_loss"], strategy
        assert e2e_repo.read_json(paths.history_path(strategy))[0]["lr"] == new_lr
    # The one metrics file is the verdict's headline: each strategy's test top-1 beside the answer.
    diff = json.loads(e2e_repo.dvc("metrics", "diff", "--json"))[str(layout.VERDICT_PATH)]  # HEAD vs workspace
    moved = {  # a metric that did not change is not in the diff
        f"test_top1.{strategy}": {"old": baseline[strategy]["test_top1"], "new": changed[strategy]["test_top1"]}
        for strategy in strategies
        if baseline[strategy]["test_top1"] != changed[strategy]["test_top1"]
    }
    shown = {key: {"old": entry["old"], "new": entry["new"]} for key, entry in diff.items()}
    assert {key: entry for key, entry in shown.items() if key.startswith("test_top1.")} == moved
    # A strategy's detailed metrics are a plain output, and still diff on request.
    (strategy, *_) = sorted(set(strategies) - own_lr)
    detailed = json.loads(e2e_repo.dvc("metrics", "diff", "--json", "--targets", str(paths.metrics_path(strategy))))
    test_loss = detailed[str(paths.metrics_path(strategy))]["test_loss"]
    assert (test_loss["old"], test_loss["new"]) == (baseline[strategy]["test_loss"], changed[strategy]["test_loss"])
    assert name in e2e_repo.dvc("exp", "list", "--name-only").split()
    revisions = find_revisions(json.loads(e2e_repo.dvc("exp", "show", "--json")), lambda entry: entry["name"] == name)
    assert len(revisions) == 1, f"dvc exp show does not list {name} once"
    assert revisions[0]["params"]["params.yaml"]["data"]["strategy"]["lr"] == new_lr
    verdict = e2e_repo.read_json(layout.VERDICT_PATH)
    assert list(revisions[0]["metrics"]) == [str(layout.VERDICT_PATH)]
    # Lists (caveats, comparisons, basis) DVC leaves out: the table stays narrow, the file and report hold them.
    # So it does nulls (seeds_for_one_point with one seed): `dvc exp show` prints "-" there.
    assert revisions[0]["metrics"][str(layout.VERDICT_PATH)]["data"] == {
        key: value for key, value in verdict.items() if not isinstance(value, list) and value is not None
    }
    assert isinstance(verdict["caveats"], list) and len(verdict["caveats"]) == verdict["num_caveats"]
    # Its columns: 7 of the answer and three per strategy (status, test top-1 and its sd: 22 with five strategies).
    scalar_columns = [key for key, value in verdict.items() if not isinstance(value, (list, dict))]  # nulls too
    per_strategy = [verdict[key] for key in ("status", "test_top1", "test_top1_std")]
    assert len(scalar_columns) + sum(map(len, per_strategy)) == 7 + 3 * len(strategies)
    assert verdict["claims_for"] == "networks"  # the test params train one seed
    assert verdict["best"] in strategies
    assert verdict["test_top1"] == {strategy: changed[strategy]["test_top1"] for strategy in strategies}
    assert_readable_exp_show(e2e_repo, strategies)


@pytest.fixture
def queue_repo(e2e_repo: Repo):
    """The shared repository; afterwards its queue workers are stopped and none of its processes is left."""
    yield e2e_repo
    e2e_repo.dvc("queue", "stop", "--kill")
    deadline = time.monotonic() + QUEUE_STOP_SECONDS
    while processes_under(e2e_repo.root) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_under(e2e_repo.root) == [], "queue processes outlived the test"


def test_queued_experiments_run_in_parallel(queue_repo: Repo, tmp_path):
    queued_lrs = (0.11, 0.12)
    sweep = f"strategies.{CHEAP_STRATEGY}.lr={queued_lrs[0]},{queued_lrs[1]}"
    queue_repo.dvc("exp", "run", "--queue", "-S", sweep, EXPERIMENT_TARGET)
    # The workers run detached and inherit the command's output: a pipe would keep this call waiting
    # for them, so their output goes to a file.
    with open(tmp_path / "queue_start.log", "w") as log:
        queue_repo.run_to_file("dvc", "queue", "start", "-j", "2", output=log)
    deadline = time.monotonic() + QUEUE_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        status = queue_repo.dvc("queue", "status")
        if not re.search(r"\b(Queued|Running)\b", status):
            break
        time.sleep(1)
    else:
        pytest.fail(f"the queue did not finish in {QUEUE_TIMEOUT_SECONDS} s:\n{status}")
    assert status.count("Success") == 2, status
    shown = json.loads(queue_repo.dvc("exp", "show", "--json"))
    for lr in queued_lrs:
        revisions = find_revisions(
            shown,
            lambda entry: entry["data"]["params"]["params.yaml"]["data"]["strategies"][CHEAP_STRATEGY].get("lr") == lr,
        )
        assert len(revisions) == 1, lr
        headline = revisions[0]["metrics"][str(layout.VERDICT_PATH)]["data"]
        for strategy in queue_repo.strategies():
            assert 0 <= headline["test_top1"][strategy] <= 1
