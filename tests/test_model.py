"""build_network: which parameters train per strategy, weight loading, frozen BatchNorm, heads, saved layout."""

import dataclasses
import re
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from tests.support.project import params_tree
from tests.support.training import class_names_only, one_phase_plan, run_context
from transfer.compute.device import Compute
from transfer.config import HeadConfig, parse_params
from transfer.errors import UserError
from transfer.models.backbone import load_backbone_state
from transfer.models.network import StrategyNet, build_head, build_network, count_parameters
from transfer.sources.weights import write_random_weights
from transfer.training.augment import Normalization
from transfer.training.batches import ImageBatches
from transfer.training.prepared_data import ImageSplit
from transfer.training.recipe import build_optimizer, train_one_epoch

PARAMS = parse_params(params_tree())  # test-owned values, never the committed params.yaml
NUM_CLASSES = 100
NET_SEED = PARAMS.strategy.seeds[0]  # seeds the head, and for scratch the whole backbone
# The weights file must come from another seed than the network: build_network draws its
# throwaway resnet18 init from NET_SEED, so with equal seeds a skipped load would go unnoticed.
WEIGHTS_SEED = 1
LINEAR_HEAD = HeadConfig(hidden_size=0, dropout=0.0)
MLP_HEAD = HeadConfig(hidden_size=64, dropout=0.1)

# Parameter-name prefixes that must train, per committed strategy ("" matches every name).
TRAINABLE_PREFIXES = {
    "shallow": ("resnet.fc.",),
    "deep": ("resnet.layer4.", "resnet.fc."),
    "scratch": ("",),
}
# Exact trainable counts with the committed (Linear 512->100) head; ResNet18 with it has 11,227,812.
TRAINABLE_COUNTS = {"shallow": 512 * 100 + 100, "deep": 8_393_728 + 51_300, "scratch": 11_227_812}
# state_dict key prefixes of the blocks each strategy freezes (relative to net.resnet).
FROZEN_PREFIXES = {
    "shallow": ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4."),
    "deep": ("conv1.", "bn1.", "layer1.", "layer2.", "layer3."),
}


@pytest.fixture(scope="module")
def weights_path(tmp_path_factory) -> Path:
    """A seeded random ResNet18 state_dict in torchvision's layout, standing in for ImageNet weights."""
    path = tmp_path_factory.mktemp("weights") / "w.pth"
    write_random_weights(path, seed=WEIGHTS_SEED)
    return path


@pytest.fixture(scope="module")
def saved_state(weights_path) -> dict[str, torch.Tensor]:
    """The weights file's tensors."""
    return torch.load(weights_path, weights_only=True)


def build(name: str, weights_path: Path, head: HeadConfig = PARAMS.model.head, seed: int = NET_SEED) -> StrategyNet:
    """A fresh network for the committed strategy called name, with head and seed."""
    return build_network(PARAMS.strategy_named(name), head, NUM_CLASSES, weights_path, seed)


@pytest.fixture(scope="module")
def built(weights_path):
    """build() shared across tests that only read the network (each build takes ~0.3 s on CPU)."""
    networks: dict[tuple, StrategyNet] = {}

    def get(name: str, head: HeadConfig = PARAMS.model.head, seed: int = NET_SEED) -> StrategyNet:
        key = (name, head, seed)
        if key not in networks:
            networks[key] = build(name, weights_path, head, seed)
        return networks[key]

    return get


def tiny_split(num_images: int = 32, seed: int = 0) -> ImageSplit:
    """Random uint8 images (N, 3, 32, 32) with random labels."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (num_images, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (num_images,), generator=generator)
    return ImageSplit(images, labels)


def test_test_params_head_is_linear():
    """The counts below assume the test params' single Linear head."""
    assert PARAMS.model.head == LINEAR_HEAD


@pytest.mark.parametrize("name", sorted(TRAINABLE_PREFIXES))
def test_exactly_the_strategy_blocks_train(name, built):
    net = built(name)
    all_names = {param_name for param_name, _ in net.named_parameters()}
    trainable = {param_name for param_name, parameter in net.named_parameters() if parameter.requires_grad}
    expected = {param_name for param_name in all_names if param_name.startswith(TRAINABLE_PREFIXES[name])}
    assert trainable == expected
    trainable_count = sum(parameter.numel() for parameter in net.parameters() if parameter.requires_grad)
    assert count_parameters(net) == (trainable_count, 11_227_812)
    assert trainable_count == TRAINABLE_COUNTS[name]


def test_shallow_trains_only_the_linear_head(built):
    net = built("shallow")
    trainable = [param_name for param_name, parameter in net.named_parameters() if parameter.requires_grad]
    assert sorted(trainable) == ["resnet.fc.bias", "resnet.fc.weight"]
    assert count_parameters(net)[0] == 51_300


@pytest.mark.parametrize("name", ["shallow", "deep"])
def test_pretrained_backbone_equals_the_weights_file(name, built, saved_state):
    backbone = built(name).resnet.state_dict()
    assert set(backbone) == set(saved_state)
    for key, tensor in saved_state.items():
        if not key.startswith("fc."):  # the 1000-class head is replaced
            assert torch.equal(backbone[key], tensor), key


def test_scratch_ignores_the_weights_file_and_is_seeded(built, weights_path, saved_state):
    scratch = built("scratch").resnet.state_dict()
    assert not torch.equal(scratch["conv1.weight"], saved_state["conv1.weight"])
    again = build("scratch", weights_path).resnet.state_dict()  # fresh, with the same seed
    for key, tensor in scratch.items():  # backbone and head
        assert torch.equal(again[key], tensor), key
    other_seed = built("scratch", seed=NET_SEED + 1).resnet.state_dict()
    assert not torch.equal(other_seed["conv1.weight"], scratch["conv1.weight"])
    assert not torch.equal(other_seed["fc.weight"], scratch["fc.weight"])


def test_scratch_never_reads_the_weights_file(tmp_path):
    net = build("scratch", tmp_path / "missing.pth")  # no such file: must not matter
    assert count_parameters(net)[0] == 11_227_812


def test_pretrained_head_is_seeded(built, weights_path):
    first = built("shallow").resnet.fc
    second = build("shallow", weights_path).resnet.fc  # fresh, with the same seed
    torch.testing.assert_close(second.weight, first.weight, rtol=0, atol=0)
    torch.testing.assert_close(second.bias, first.bias, rtol=0, atol=0)
    other_seed = built("shallow", seed=NET_SEED + 1).resnet.fc
    assert not torch.equal(first.weight, other_seed.weight)


@pytest.mark.parametrize("name", ["shallow", "deep"])
def test_train_mode_keeps_frozen_blocks_in_eval(name, weights_path):
    net = build(name, weights_path)
    net.eval()
    net.train()
    assert net.training
    assert len(net.frozen_blocks) == {"shallow": 5, "deep": 4}[name]
    for block in net.frozen_blocks:
        assert all(not module.training for module in block.modules())
    for block in net.trainable_blocks:
        assert all(module.training for module in block.modules())
    assert net.resnet.fc.training


@pytest.mark.parametrize("name", ["shallow", "deep"])
def test_training_step_moves_neither_frozen_weights_nor_batchnorm_statistics(name, weights_path):
    net = build(name, weights_path)
    before = {key: value.clone() for key, value in net.resnet.state_dict().items()}
    training = dataclasses.replace(PARAMS.strategy_named(name).training, batch_size=16)
    optimizer = build_optimizer(net, training)
    compute = Compute(device=torch.device("cpu"), amp_dtype=None, channels_last=False)
    batches = ImageBatches(tiny_split(32), Normalization(32), PARAMS.data.augment, compute)
    run = run_context(PARAMS, name, class_names_only(NUM_CLASSES), compute)
    loss, _, seen = train_one_epoch(net, optimizer, batches, run, one_phase_plan(run, training.batch_size), epoch=1)
    assert seen == 32  # two optimizer steps of 16
    assert loss > 0

    after = net.resnet.state_dict()
    frozen_keys = [key for key in before if key.startswith(FROZEN_PREFIXES[name])]
    assert any(key.endswith("running_mean") for key in frozen_keys)
    for key in frozen_keys:
        assert torch.equal(after[key], before[key]), key  # weights, running_mean/var, num_batches_tracked
    for key in ("fc.weight", "fc.bias"):
        assert not torch.equal(after[key], before[key]), key
    for block in net.frozen_blocks:
        for parameter in block.parameters():
            assert parameter.grad is None  # no autograd through the frozen prefix

    if name == "deep":
        layer4_bn = [module for module in net.resnet.layer4.modules() if isinstance(module, nn.BatchNorm2d)]
        assert len(layer4_bn) == 5
        for module in layer4_bn:
            assert module.num_batches_tracked.item() == 2
        layer4_stat_keys = [
            key for key in before if key.startswith("layer4.") and key.endswith(("running_mean", "running_var"))
        ]
        assert len(layer4_stat_keys) == 10
        for key in layer4_stat_keys:
            assert not torch.equal(after[key], before[key]), key
        assert not torch.equal(after["layer4.0.conv1.weight"], before["layer4.0.conv1.weight"])


def test_mlp_head_shapes():
    head = build_head(MLP_HEAD, NUM_CLASSES)
    assert [type(module) for module in head] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert head[0].weight.shape == (64, 512) and head[0].bias.shape == (64,)
    assert head[2].p == 0.1
    assert head[3].weight.shape == (100, 64) and head[3].bias.shape == (100,)
    linear = build_head(LINEAR_HEAD, NUM_CLASSES)
    assert isinstance(linear, nn.Linear) and linear.weight.shape == (100, 512)


def test_network_with_mlp_head(built):
    net = built("shallow", head=MLP_HEAD)
    trainable = {param_name for param_name, parameter in net.named_parameters() if parameter.requires_grad}
    assert trainable == {"resnet.fc.0.weight", "resnet.fc.0.bias", "resnet.fc.3.weight", "resnet.fc.3.bias"}
    assert count_parameters(net)[0] == 512 * 64 + 64 + 64 * 100 + 100
    images = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    net.eval()
    with torch.no_grad():
        logits = net(images)
        assert logits.shape == (8, 100)
        torch.testing.assert_close(net(images), logits, rtol=0, atol=0)  # dropout is off in eval


def test_load_backbone_state_returns_the_file(weights_path, saved_state):
    state = load_backbone_state(weights_path)
    assert set(state) == set(saved_state)
    for key, tensor in saved_state.items():
        assert torch.equal(state[key], tensor), key


def test_load_backbone_state_missing_file(tmp_path):
    path = tmp_path / "absent.pth"
    with pytest.raises(UserError, match=re.escape(str(path))) as error:
        load_backbone_state(path)
    assert "dvc repro weights" in str(error.value)


def test_load_backbone_state_not_a_torch_file(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"this is not a torch file\x00\x01\x02" * 10)
    with pytest.raises(UserError, match=re.escape(str(path))) as error:
        load_backbone_state(path)
    assert "cannot be read" in str(error.value)
    assert "\n" not in str(error.value)


def test_load_backbone_state_wrong_shape(tmp_path, saved_state):
    path = tmp_path / "ten_classes.pth"
    torch.save({**saved_state, "fc.weight": torch.zeros(10, 512)}, path)
    with pytest.raises(UserError, match=re.escape(str(path))) as error:
        load_backbone_state(path)
    assert "fc.weight has shape (10, 512), expected (1000, 512)" in str(error.value)


def test_load_backbone_state_wrong_keys(tmp_path):
    path = tmp_path / "linear.pth"
    torch.save(nn.Linear(512, 100).state_dict(), path)
    with pytest.raises(UserError, match=re.escape(str(path))):
        load_backbone_state(path)


@pytest.mark.parametrize("head", [LINEAR_HEAD, MLP_HEAD], ids=["linear", "mlp"])
def test_saved_layout_is_torchvision(head, built):
    net = built("deep", head=head)
    torchvision_net = resnet18(weights=None)
    torchvision_net.fc = build_head(head, NUM_CLASSES)
    torchvision_net.load_state_dict(net.resnet.state_dict())  # strict: same keys and shapes
    # 64 px so layer4's output is 2x2 and pooling matters (at 32 px it is 1x1).
    images = torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    net.eval()
    torchvision_net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(images), torchvision_net(images), rtol=0, atol=0)
