"""While `dvc repro train@<strategy>` runs, its seed's history.json grows one epoch at a time."""

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.support.project import Repo, params_tree
from transfer import paths

EPOCHS = 4
POLL_SECONDS = 0.05  # an epoch of scratch on 500 tiny images takes about half a second on 2 CPU cores


def test_seed_history_shows_each_epoch_before_the_stage_ends(tmp_path: Path):
    tree = params_tree({"strategy": {"epochs": EPOCHS}, "data": {"synthetic": {"train_size": 700}}})
    tree["strategies"] = {"scratch": {"pretrained": False, "train_layers": "all", "augment": True}}
    repo = Repo.create(tmp_path / "repo", tree)
    repo.dvc("repro", "prepare", "weights")  # upstream first, so the running process is training only
    history = repo.root / paths.seed_dir("scratch", 0) / paths.HISTORY_FILE
    with open(tmp_path / "repro.log", "w") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "dvc"), "repro", "train@scratch"],
            cwd=repo.root,
            env=repo.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        seen_row_counts = set()
        try:
            while process.poll() is None:
                try:
                    seen_row_counts.add(len(json.loads(history.read_text())))
                except FileNotFoundError:
                    pass  # not written yet (or removed by DVC before the run); atomic writes never show half a file
                time.sleep(POLL_SECONDS)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
    assert process.returncode == 0, (tmp_path / "repro.log").read_text()
    assert {1, 2, 3} <= seen_row_counts
    assert len(json.loads(history.read_text())) == EPOCHS
    combined = json.loads((repo.root / paths.history_path("scratch")).read_text())
    assert [row["epoch"] for row in combined] == list(range(1, EPOCHS + 1))
