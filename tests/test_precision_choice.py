"""compute.precision auto on a CPU: measured once per machine, then the same choice on every call."""

import json

import pytest
import torch

from tests.support.project import params_tree
from tests.support.training import class_names_only, run_context
from transfer.compute import precision
from transfer.compute.device import resolve_compute
from transfer.config import parse_params
from transfer.training.checkpoint import run_key
from transfer.training.outputs import used_compute_fields
from transfer.training.runs import checkpoint_config


class FakeProbe:
    """Stands in for the timed training steps: fixed images/s per precision, and a count of calls."""

    def __init__(self, fp32: float, bf16: float):
        self.speeds = {None: fp32, torch.bfloat16: bf16}
        self.calls = 0

    def __call__(self, amp_dtype, channels_last: bool) -> float:
        """Images/s of amp_dtype."""
        self.calls += 1
        return self.speeds[amp_dtype]


@pytest.mark.parametrize(
    ("fp32", "bf16", "expected"),
    [
        (500.0, 700.0, "bf16"),  # clearly faster: bf16
        (500.0, 540.0, "fp32"),  # 8% faster is within the margin: a near-tie stays fp32
        (600.0, 500.0, "fp32"),  # slower, as on an Intel Xeon with AMX
    ],
)
def test_bf16_is_chosen_only_when_clearly_faster(tmp_path, fp32, bf16, expected):
    assert precision.cpu_precision(True, tmp_path / "choice.json", FakeProbe(fp32, bf16)) == expected


def test_the_choice_is_measured_once_and_then_read_back(tmp_path):
    path = tmp_path / "choice.json"
    probe = FakeProbe(500.0, 700.0)
    first = precision.cpu_precision(True, path, probe)
    calls = probe.calls
    assert calls == 2 * precision.PROBE_REPEATS  # both precisions, interleaved
    # Later calls never time anything, even where a new measurement would now say otherwise.
    slower_now = FakeProbe(700.0, 500.0)
    assert [precision.cpu_precision(True, path, slower_now) for _ in range(3)] == [first] * 3
    assert slower_now.calls == 0
    stored = json.loads(path.read_text())[precision.machine_key(True)]
    assert stored == {"precision": "bf16", "fp32_images_per_second": 500.0, "bf16_images_per_second": 700.0}


def test_each_memory_layout_is_measured_for_itself(tmp_path):
    path = tmp_path / "choice.json"
    precision.cpu_precision(True, path, FakeProbe(500.0, 700.0))
    probe = FakeProbe(700.0, 500.0)
    assert precision.cpu_precision(False, path, probe) == "fp32"
    assert probe.calls > 0
    assert precision.cpu_precision(True, path, probe) == "bf16"  # the first layout's choice is kept


def test_an_unreadable_store_is_measured_again(tmp_path):
    path = tmp_path / "choice.json"
    path.write_text("not json")
    assert precision.cpu_precision(True, path, FakeProbe(500.0, 700.0)) == "bf16"
    assert json.loads(path.read_text())[precision.machine_key(True)]["precision"] == "bf16"


@pytest.mark.pipeline  # times real training steps (bf16 emulated on most CPUs)
def test_the_real_probe_times_both_precisions():
    assert precision.time_training_steps(None, False) > 0
    assert precision.time_training_steps(torch.bfloat16, True) > 0


def test_a_tampered_cached_choice_changes_the_checkpoint_key_and_is_recorded(tmp_path, monkeypatch):
    # compute.precision auto on a CPU with bf16 instructions reads the cached choice; whoever edits the cache
    # changes the precision, so the key (and every result's provenance) must carry the precision used, not 'auto'
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr("transfer.compute.device.cpu_has_native_bf16", lambda: True)
    params = parse_params(params_tree({"compute": {"precision": "auto"}}))
    cache = precision.cache_path()
    cache.parent.mkdir(parents=True)

    def with_cached_choice(choice: str) -> tuple[dict, str]:
        cache.write_text(json.dumps({precision.machine_key(params.compute.channels_last): {"precision": choice}}))
        compute = resolve_compute(params.compute)
        run = run_context(params, "scratch", class_names_only(100), compute)
        return used_compute_fields(compute), run_key(checkpoint_config(run), [], [])

    fp32_fields, fp32_key = with_cached_choice("fp32")
    bf16_fields, bf16_key = with_cached_choice("bf16")
    assert fp32_fields == {"device": "cpu", "precision": "fp32"}
    assert bf16_fields == {"device": "cpu", "precision": "bf16"}
    assert fp32_key != bf16_key
