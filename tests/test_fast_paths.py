"""The speed-ups change no result beyond a stated tolerance: cached features, channels_last, bf16."""

import dataclasses

import pytest
import torch
from torch.testing import assert_close

from stages import paths
from stages.batches import FeatureBatches, ImageBatches, cache_features, training_batches
from stages.config import load_params
from stages.data import ImageSplit, epoch_generator
from stages.device import Compute
from stages.errors import UserError
from stages.model import build_network
from stages.train import build_optimizer, train_one_epoch
from stages.weights import write_random_weights

PARAMS = load_params(paths.PROJECT_ROOT / paths.PARAMS_PATH)
NUM_CLASSES = 100
CPU = torch.device("cpu")
FP32 = Compute(device=CPU, amp_dtype=None, channels_last=False)
FP32_CHANNELS_LAST = Compute(device=CPU, amp_dtype=None, channels_last=True)
BF16 = Compute(device=CPU, amp_dtype=torch.bfloat16, channels_last=True)
# bf16 keeps 8 bits of mantissa: over a few steps the loss may drift by about 1%; we allow 3%.
BF16_LOSS_RTOL = 0.03


@pytest.fixture(scope="module")
def weights_path(tmp_path_factory):
    """Seeded stand-in for the ImageNet weights."""
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    write_random_weights(path, seed=1)
    return path


def split(num_images: int = 64) -> ImageSplit:
    """Seeded random uint8 images with labels."""
    generator = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (num_images, 3, 32, 32), dtype=torch.uint8, generator=generator)
    return ImageSplit(images, torch.randint(0, NUM_CLASSES, (num_images,), generator=generator))


def network(name: str, weights_path, compute: Compute = FP32, **strategy_changes):
    """The committed strategy called name, built on the CPU in compute's memory layout."""
    strategy = dataclasses.replace(PARAMS.strategy_named(name), **strategy_changes)
    net = build_network(strategy, PARAMS.model.head, NUM_CLASSES, weights_path, seed=0)
    return net.to(memory_format=compute.memory_format), strategy


def one_epoch(net, batches, compute: Compute, batch_size: int = 16) -> tuple[float, float, int]:
    """A training epoch with the committed optimizer settings and a fixed generator."""
    optimizer = build_optimizer(net, dataclasses.replace(PARAMS.strategy, batch_size=batch_size))
    return train_one_epoch(
        net, optimizer, batches, batch_size, epoch_generator(0, 1, CPU), compute, NUM_CLASSES, "test"
    )


@pytest.mark.parametrize("name", ["shallow", "deep"])
def test_cached_features_give_the_logits_of_the_full_network(name, weights_path):
    net, _ = network(name, weights_path)
    images = ImageBatches(split(), 32, None, FP32)
    cached = cache_features(net, images, batch_size=16)
    net.eval()
    indices = torch.arange(len(images))
    with torch.no_grad():
        assert_close(cached.logits(net, indices), images.logits(net, indices), rtol=0, atol=0)


def test_head_only_cache_is_pooled_to_512_values_per_image(weights_path):
    net, _ = network("shallow", weights_path)
    cached = cache_features(net, ImageBatches(split(), 64, None, FP32), batch_size=16)
    assert cached.features.shape == (64, 512, 1, 1)


@pytest.mark.parametrize("name", ["shallow", "deep"])
def test_training_on_cached_features_equals_training_on_images(name, weights_path):
    net_images, strategy = network(name, weights_path, augment=False)
    net_cached, _ = network(name, weights_path, augment=False)
    images = ImageBatches(split(), 32, None, FP32)
    batches = training_batches(net_cached, images, strategy.augment, batch_size=16)
    assert isinstance(batches, FeatureBatches)
    assert one_epoch(net_cached, batches, FP32) == one_epoch(net_images, images, FP32)
    assert_close(net_cached.resnet.state_dict(), net_images.resnet.state_dict(), rtol=0, atol=0)


def test_augmenting_or_scratch_strategies_never_cache(weights_path):
    shallow, _ = network("shallow", weights_path)
    scratch, _ = network("scratch", weights_path)
    images = ImageBatches(split(), 32, PARAMS.data.augment, FP32)
    assert training_batches(shallow, images, augment_images=True, batch_size=16) is images
    assert training_batches(scratch, images, augment_images=False, batch_size=16) is images


def test_channels_last_gives_the_same_logits(weights_path):
    net, _ = network("scratch", weights_path)
    net.eval()
    indices = torch.arange(16)
    with torch.no_grad():
        contiguous = ImageBatches(split(), 32, None, FP32).logits(net, indices)
        channels_last = ImageBatches(split(), 32, None, FP32_CHANNELS_LAST).logits(
            net.to(memory_format=torch.channels_last), indices
        )
    assert_close(channels_last, contiguous, rtol=1e-4, atol=1e-4)


def test_bf16_training_steps_track_fp32(weights_path):
    losses = {}
    for label, compute in (("fp32", FP32), ("bf16", BF16)):
        net, _ = network("scratch", weights_path, compute)
        images = ImageBatches(split(), 32, PARAMS.data.augment, compute)
        losses[label] = [one_epoch(net, images, compute)[0] for _ in range(2)]  # 2 epochs of 4 steps
    assert_close(torch.tensor(losses["bf16"]), torch.tensor(losses["fp32"]), rtol=BF16_LOSS_RTOL, atol=0)
    assert losses["bf16"] != losses["fp32"]  # bf16 really ran


def test_diverging_loss_stops_with_the_strategy_epoch_step_and_lr(weights_path):
    net, _ = network("scratch", weights_path)
    images = ImageBatches(split(), 32, None, FP32)
    optimizer = torch.optim.SGD(net.parameters(), lr=1e12)
    with pytest.raises(UserError, match=r"train@scratch epoch 2/3: the loss became (nan|inf) by step \d+ at lr 1e\+12"):
        for _ in range(3):
            train_one_epoch(
                net, optimizer, images, 16, epoch_generator(0, 1, CPU), FP32, NUM_CLASSES, "train@scratch epoch 2/3"
            )
