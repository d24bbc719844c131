"""Phases, the CIFAR stem and the full strategy, in process on tiny random data."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from tests.support.project import params_tree
from tests.support.training import run_context
from transfer.compute.device import Compute
from transfer.config import parse_params
from transfer.models.network import (
    StrategyNet,
    build_inference_network,
    build_network,
    count_parameters,
    with_train_layers,
)
from transfer.training.augment import Normalization
from transfer.training.batches import ImageBatches
from transfer.training.checkpoint import EpochCheckpoints
from transfer.training.outputs import save_model
from transfer.training.prepared_data import PreparedData
from transfer.training.recipe import PhasePlan, build_optimizer, build_scheduler, fit, train_one_epoch
from transfer.training.runs import training_flops_by_epoch

NUM_CLASSES = 10
CPU = torch.device("cpu")
FP32 = Compute(device=CPU, amp_dtype=None, channels_last=False)
SEED = 0
BATCH_SIZE = 8  # two steps an epoch on tiny_data
UNUSED_WEIGHTS = Path("no-pretrained-weights.pth")  # every strategy here starts from random init


@pytest.fixture(autouse=True)
def in_temporary_directory(tmp_path, monkeypatch):
    """fit() writes live history under results/: here, never into the checkout."""
    monkeypatch.chdir(tmp_path)


TWO_PHASES = [
    {"train_layers": [], "epochs": 1, "lr": 0.1},
    {"train_layers": ["layer4"], "epochs": 2, "lr": 0.01},
]


def tiny_data(train: int = 16, val: int = 8, test: int = 8) -> PreparedData:
    """Seeded random 32x32 images in NUM_CLASSES classes."""
    rng = np.random.default_rng(0)

    def images(count: int) -> np.ndarray:
        return rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)

    def labels(count: int) -> np.ndarray:
        return rng.integers(0, NUM_CLASSES, count).astype(np.int64)

    return PreparedData(
        images(train), labels(train), images(val), labels(val), images(test), labels(test),
        tuple(f"class_{index}" for index in range(NUM_CLASSES)), np.zeros(NUM_CLASSES, dtype=np.int64), ("all",),
    )  # fmt: skip


def params_with(**strategies):
    """Params of TEST_PARAMS (batch 16) whose strategies are the given ones, scratch-like unless they say."""
    entries = {name: {"pretrained": False, "augment": True, **fields} for name, fields in strategies.items()}
    tree = params_tree({"strategy": {"batch_size": BATCH_SIZE}})
    tree["strategies"] = entries
    return parse_params(tree)


def network(params, name: str, seed: int = SEED) -> StrategyNet:
    """The named strategy's freshly seeded network."""
    return build_network(params.strategy_named(name), params.model.head, NUM_CLASSES, UNUSED_WEIGHTS, seed)


def run_fit(params, name: str, checkpoint_path: Path, data: PreparedData) -> tuple[StrategyNet, object]:
    """fit() on a fresh network; (net, progress)."""
    net = network(params, name)
    checkpoints = EpochCheckpoints(checkpoint_path, "key")
    return net, fit(net, run_context(params, name, data, FP32, SEED), checkpoints)


def test_two_phases_equal_the_phases_run_by_hand(tmp_path):
    data = tiny_data()
    params = params_with(
        two={"phases": TWO_PHASES},
        first={"train_layers": [], "epochs": 1, "lr": 0.1},
    )
    net, progress = run_fit(params, "two", tmp_path / "two.pt", data)
    # By hand: phase 1 as its own strategy, then phase 2 from its last weights with a fresh optimizer
    # and schedule over layer4 and the head, drawing each epoch's batches from the run's epoch number.
    by_hand, first_progress = run_fit(params, "first", tmp_path / "first.pt", data)
    phase_two = params.strategy_named("two").phases[1]
    view = StrategyNet(by_hand.resnet, ("layer4",))
    optimizer = build_optimizer(view, phase_two.training)
    scheduler = build_scheduler(optimizer, phase_two.training)
    train_batches = ImageBatches(data.split("train", CPU), Normalization(32), params.data.augment, FP32)
    run, plan = run_context(params, "two", data, FP32, SEED), PhasePlan(None, phase_two, 2, 3)
    for epoch in (2, 3):
        train_one_epoch(view, optimizer, train_batches, run, plan, epoch)
        scheduler.step()
    # Same operations in the same order on the CPU: bit-identical, so no tolerance.
    assert_close(net.state_dict(), by_hand.state_dict(), rtol=0, atol=0)
    assert [row["epoch"] for row in progress.history] == [1, 2, 3]
    assert [row["phase"] for row in progress.history] == [1, 2, 2]
    assert [row["lr"] for row in progress.history][:2] == [0.1, 0.01]
    assert progress.history[0]["train_loss"] == first_progress.history[0]["train_loss"]
    assert "phase" not in first_progress.history[0]  # a strategy without phases has no new column
    best = max(range(3), key=lambda index: (progress.history[index]["val_top1"], -index))
    assert progress.best_epoch == best + 1  # chosen over every epoch of every phase, first on a tie


class InterruptingCheckpoints(EpochCheckpoints):
    """Checkpoints that stop the run (as Ctrl-C would) once the given epoch is saved."""

    def __init__(self, path: Path, key: str, stop_after: int):
        super().__init__(path, key)
        self.stop_after = stop_after

    def save(self, net, optimizer, scheduler, progress) -> None:
        """Save, then interrupt after stop_after epochs."""
        super().save(net, optimizer, scheduler, progress)
        if progress.completed_epochs == self.stop_after:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The two-phase run straight through: (params, data, net, progress)."""
    data = tiny_data()
    params = params_with(two={"phases": TWO_PHASES})
    folder = tmp_path_factory.mktemp("straight")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)  # module-scoped: set up before the autouse chdir of each test
        net, progress = run_fit(params, "two", folder / "two.pt", data)
    return params, data, net, progress


@pytest.mark.parametrize("stop_after", [1, 2], ids=["at the phase boundary", "inside phase 2"])
def test_resume_inside_any_phase_gives_the_uninterrupted_run(tmp_path, uninterrupted, stop_after):
    params, data, net, progress = uninterrupted
    path = tmp_path / "interrupted.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(network(params, "two"), run_context(params, "two", data), InterruptingCheckpoints(path, "key", stop_after))
    resumed_net, resumed = run_fit(params, "two", path, data)
    assert_close(resumed_net.state_dict(), net.state_dict(), rtol=0, atol=0)
    assert resumed.history == progress.history
    assert resumed.best_epoch == progress.best_epoch
    assert_close(resumed.best_state, progress.best_state, rtol=0, atol=0)


def test_train_flops_of_two_phases_is_the_sum_of_the_phases_as_strategies():
    data = tiny_data()
    augment_free = [{**phase, "epochs": 2} for phase in TWO_PHASES]
    params = params_with(
        two={"phases": augment_free, "augment": False},
        first={"train_layers": [], "epochs": 2, "lr": 0.1, "augment": False},
        second={"train_layers": ["layer4"], "epochs": 2, "lr": 0.01, "augment": False},
    )

    def flops(name: str) -> list[int]:
        return training_flops_by_epoch(network(params, name), run_context(params, name, data))

    first, second = flops("first"), flops("second")
    # Counted on across phases: phase 2's epochs start from what phase 1 spent.
    assert flops("two") == first + [first[-1] + spent for spent in second]


def test_full_trains_every_parameter_and_lpft_counts_its_widest_phase():
    params = params_with(
        full={"pretrained": False, "train_layers": "all"},
        lpft={"phases": [{"train_layers": [], "epochs": 1}, {"train_layers": "all", "epochs": 1}]},
    )
    trainable, total = count_parameters(network(params, "full"))
    assert trainable == total
    lpft = network(params, "lpft")
    assert count_parameters(lpft)[0] == count_parameters(lpft.resnet.fc)[0]  # phase 1: the head only
    widest = with_train_layers(lpft, params.strategy_named("lpft").train_layers)
    assert count_parameters(widest)[0] == count_parameters(widest)[1]


def test_cifar_stem_has_the_published_parameter_count_and_rebuilds_for_inference(tmp_path):
    params = params_with(cifar={"train_layers": "all", "stem": "cifar"})
    strategy = params.strategy_named("cifar")
    net = build_network(strategy, params.model.head, 100, UNUSED_WEIGHTS, SEED)
    assert count_parameters(net) == (11_220_132, 11_220_132)
    assert net.resnet.conv1.kernel_size == (3, 3) and net.resnet.conv1.stride == (1, 1)
    assert isinstance(net.resnet.maxpool, torch.nn.Identity)
    data = tiny_data()
    small = build_network(strategy, params.model.head, NUM_CLASSES, UNUSED_WEIGHTS, SEED)
    run = run_context(params, strategy, data)
    save_model(run, small, model_seed=SEED)
    checkpoint = torch.load(tmp_path / "models" / "cifar.pt", weights_only=True)
    assert checkpoint["config"]["strategy"]["stem"] == "cifar"
    rebuilt = build_inference_network(checkpoint)
    images = torch.randn(2, 3, 32, 32)
    small.eval()
    with torch.no_grad():
        assert_close(rebuilt(images), small(images), rtol=0, atol=0)
