"""The speed-ups change no result beyond a stated tolerance: cached features, channels_last, bf16."""

import dataclasses

import pytest
import torch
from torch.testing import assert_close

from tests.support.project import params_tree
from tests.support.training import class_names_only, one_phase_plan, run_context
from transfer.compute.device import Compute
from transfer.config import parse_params
from transfer.errors import UserError
from transfer.models.network import build_network
from transfer.sources.weights import write_random_weights
from transfer.training.augment import Normalization
from transfer.training.batches import FeatureBatches, ImageBatches, cache_features, frozen_output, training_batches
from transfer.training.prepared_data import ImageSplit
from transfer.training.recipe import build_optimizer, train_one_epoch

PARAMS = parse_params(params_tree())  # test-owned values, never the committed params.yaml
NUM_CLASSES = 100
DATA = class_names_only(NUM_CLASSES)
SIZE_32, SIZE_64 = Normalization(32), Normalization(64)
CPU = torch.device("cpu")
FP32 = Compute(device=CPU, amp_dtype=None, channels_last=False)
FP32_CHANNELS_LAST = Compute(device=CPU, amp_dtype=None, channels_last=True)
BF16 = Compute(device=CPU, amp_dtype=torch.bfloat16, channels_last=True)
# bf16 keeps 8 significant bits: each rounding of an operand has relative error at most
# BF16_UNIT_ROUNDOFF = 2^-8. Under autocast every convolution and the head round both inputs and
# weights (two roundings) and accumulate in fp32; BatchNorm, the loss and the optimizer run in fp32.
# To first order the relative errors of the WEIGHT_LAYERS layers on ResNet18's longest path add up,
# so the logits carry a relative error of at most 2 * u * WEIGHT_LAYERS in the forward pass.
BF16_UNIT_ROUNDOFF = 2.0**-8
WEIGHT_LAYERS = 18  # conv1, 16 convolutions in the 8 basic blocks, fc
LOGIT_RELATIVE_BOUND = 2 * BF16_UNIT_ROUNDOFF * WEIGHT_LAYERS  # 0.14
# The gradients go through the forward path and back again (4 * u * WEIGHT_LAYERS = 0.28 to first
# order), but in training mode BatchNorm divides by each batch's standard deviation, which can
# amplify rounding errors by a factor no a-priori bound fixes. So the gradient check asks only
# for what makes a bf16 step useful: it points within 60 degrees of the fp32 gradient (relative
# error below 0.87, three times the first-order estimate). A broken bf16 path (a wrong cast, a loss
# in bf16) gives a cosine near 0: two unrelated directions in 11 million dimensions.
MIN_GRADIENT_COSINE = 0.5


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
    """Epoch 1 of seed 0 with the test params' optimizer settings (a fixed generator)."""
    optimizer = build_optimizer(net, dataclasses.replace(PARAMS.strategy, batch_size=batch_size))
    run = run_context(PARAMS, "scratch", DATA, compute)
    return train_one_epoch(net, optimizer, batches, run, one_phase_plan(run, batch_size), epoch=1)


@pytest.mark.parametrize("name", ["shallow", "deep"])
def test_cached_features_give_the_logits_of_the_full_network(name, weights_path):
    net, _ = network(name, weights_path)
    images = ImageBatches(split(), SIZE_32, None, FP32)
    cached = cache_features(net, images, batch_size=16)
    net.eval()
    indices = torch.arange(len(images))
    with torch.no_grad():
        assert_close(cached.logits(net, indices), images.logits(net, indices), rtol=0, atol=0)


def test_head_only_cache_is_pooled_to_512_values_per_image(weights_path):
    net, _ = network("shallow", weights_path)
    cached = cache_features(net, ImageBatches(split(), SIZE_64, None, FP32), batch_size=16)
    assert cached.features.shape == (64, 512, 1, 1)


@pytest.mark.parametrize("name", ["shallow", "deep"])
def test_training_on_cached_features_equals_training_on_images(name, weights_path):
    net_images, strategy = network(name, weights_path, augment=False)
    net_cached, _ = network(name, weights_path, augment=False)
    images = ImageBatches(split(), SIZE_32, None, FP32)
    batches = training_batches(net_cached, images, strategy.augment, batch_size=16)
    assert isinstance(batches, FeatureBatches)
    assert one_epoch(net_cached, batches, FP32) == one_epoch(net_images, images, FP32)
    assert_close(net_cached.resnet.state_dict(), net_images.resnet.state_dict(), rtol=0, atol=0)


def test_augmenting_or_scratch_strategies_never_cache(weights_path):
    shallow, _ = network("shallow", weights_path)
    scratch, _ = network("scratch", weights_path)
    images = ImageBatches(split(), SIZE_32, PARAMS.data.augment, FP32)
    assert training_batches(shallow, images, augments=True, batch_size=16) is images
    assert training_batches(scratch, images, augments=False, batch_size=16) is images


def test_channels_last_gives_the_same_logits(weights_path):
    net, _ = network("scratch", weights_path)
    net.eval()
    indices = torch.arange(16)
    with torch.no_grad():
        contiguous = ImageBatches(split(), SIZE_32, None, FP32).logits(net, indices)
        channels_last = ImageBatches(split(), SIZE_32, None, FP32_CHANNELS_LAST).logits(
            net.to(memory_format=torch.channels_last), indices
        )
    assert_close(channels_last, contiguous, rtol=1e-4, atol=1e-4)


def loss_and_gradient(net, images: ImageBatches, compute: Compute) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits, loss, flattened gradient of every parameter) of one training-mode step on the first 32 images."""
    net.train()
    indices = torch.arange(32)
    with compute.autocast():
        logits = images.logits(net, indices, generator=None)
        loss = torch.nn.functional.cross_entropy(logits.float(), images.labels[indices])
    net.zero_grad(set_to_none=True)
    loss.backward()
    gradient = torch.cat([parameter.grad.flatten() for parameter in net.parameters()])
    return logits.detach().float(), loss.detach(), gradient


def test_bf16_step_computes_the_fp32_step_within_rounding(weights_path):
    # Same weights, same unaugmented batch, one step: the only difference is bf16 rounding.
    results = {}
    for label, compute in (("fp32", FP32), ("bf16", BF16)):
        net, _ = network("scratch", weights_path, compute)
        results[label] = loss_and_gradient(net, ImageBatches(split(), SIZE_32, None, compute), compute)
    (logits32, loss32, gradient32), (logits16, loss16, gradient16) = results["fp32"], results["bf16"]
    assert not torch.equal(logits16, logits32)  # bf16 really ran
    # Cross-entropy moves by at most 2 * max|change of a logit| (its gradient in the logits is
    # softmax - one-hot, of L1 norm at most 2); each logit moves by at most the relative bound.
    loss_bound = 2 * LOGIT_RELATIVE_BOUND * logits32.abs().max()
    assert (loss16 - loss32).abs() <= loss_bound
    assert torch.nn.functional.cosine_similarity(gradient16, gradient32, dim=0) >= MIN_GRADIENT_COSINE


def test_diverging_loss_stops_with_the_strategy_epoch_step_and_lr(weights_path):
    net, _ = network("scratch", weights_path)
    images = ImageBatches(split(), SIZE_32, None, FP32)
    optimizer = torch.optim.SGD(net.parameters(), lr=1e12)
    run = run_context(PARAMS, "scratch", DATA)
    plan = one_phase_plan(run, batch_size=16, epochs=3)
    message = r"train@scratch seed 0 epoch 2/3: the loss became (nan|inf) by step \d+ at lr 1e\+12"
    with pytest.raises(UserError, match=message):
        for _ in range(3):
            train_one_epoch(net, optimizer, images, run, plan, epoch=2)


@pytest.mark.parametrize("name", ["shallow", "deep"])
def test_preallocated_feature_cache_equals_the_concatenated_batches(name, weights_path):
    # The cache fills one tensor batch by batch; it must hold exactly what concatenating the batches held
    # (the layout, dtype and bytes the training path reads), and be usable by autograd like before.
    net, _ = network(name, weights_path)
    images = ImageBatches(split(), SIZE_32, None, FP32)
    cached = cache_features(net, images, batch_size=24)  # 64 images: batches of 24, 24, 16
    net.eval()
    with torch.inference_mode():
        parts = [frozen_output(net, images.inputs(indices)) for indices in torch.arange(len(images)).split(24)]
    expected = torch.cat(parts).clone()
    assert cached.features.dtype == expected.dtype and cached.features.shape == expected.shape
    assert torch.equal(cached.features, expected)
    assert not cached.features.is_inference()
