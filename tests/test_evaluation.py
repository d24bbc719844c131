"""Top-k accuracy, evaluate(), and the optimizer and per-epoch learning-rate schedules."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.support.project import params_tree
from transfer.compute.device import Compute
from transfer.config import parse_params
from transfer.models.network import build_network
from transfer.sources.weights import write_random_weights
from transfer.training.augment import Normalization
from transfer.training.batches import ImageBatches
from transfer.training.evaluation import Scores, TopKAccuracy, confusion_counts, evaluate, superclass_top1, top_classes
from transfer.training.prepared_data import ImageSplit
from transfer.training.recipe import build_optimizer, build_scheduler

FP32_CPU = Compute(device=torch.device("cpu"), amp_dtype=None, channels_last=False)


def images(split: ImageSplit) -> ImageBatches:
    """Un-augmented 32-px batches of split, in fp32 on the CPU."""
    return ImageBatches(split, Normalization(32), None, FP32_CPU)


PARAMS = parse_params(params_tree())  # test-owned values, never the committed params.yaml
NUM_CLASSES = 100
CPU = torch.device("cpu")


def direct_top_k(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Fraction of rows of logits (N, classes) whose label is among the k largest, as float32."""
    hits = (logits.topk(k).indices == labels[:, None]).any(dim=1)
    return hits.float().mean()


def random_logits(num_samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded logits (N, 100) and labels (N,)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(num_samples, NUM_CLASSES, generator=generator), torch.randint(
        0, NUM_CLASSES, (num_samples,), generator=generator
    )


def test_top_k_accuracy_matches_direct_count_over_uneven_batches():
    logits, labels = random_logits(1000, seed=0)
    # Sharpen some rows toward their label so the accuracies are far from chance.
    logits[::3] += 4.0 * F.one_hot(labels[::3], NUM_CLASSES)
    accuracy = TopKAccuracy(NUM_CLASSES, CPU)
    sizes = [1, 7, 300, 92, 600]
    for batch_logits, batch_labels in zip(logits.split(sizes), labels.split(sizes)):
        accuracy.update(batch_logits, batch_labels)
    top1, top5 = accuracy.compute()
    expected_top1, expected_top5 = direct_top_k(logits, labels, 1), direct_top_k(logits, labels, 5)
    assert 0.3 < expected_top1 < expected_top5 < 0.6  # neither trivial nor saturated
    torch.testing.assert_close(torch.tensor(top1), expected_top1, rtol=0, atol=0)
    torch.testing.assert_close(torch.tensor(top5), expected_top5, rtol=0, atol=0)


def test_top_k_accuracy_known_answer():
    logits = torch.arange(10.0).repeat(4, 1)  # every row ranks class 9 first, then 8, 7, ...
    labels = torch.tensor([9, 9, 7, 2])  # first, first, third (top-5 only), eighth (miss)
    accuracy = TopKAccuracy(10, CPU)
    accuracy.update(logits, labels)
    assert accuracy.compute() == (0.5, 0.75)


def test_top_k_accuracy_is_cumulative_and_counts_each_sample_once():
    accuracy = TopKAccuracy(10, CPU)
    accuracy.update(torch.eye(10)[:3], torch.tensor([0, 1, 2]))  # 3 hits
    accuracy.update(torch.eye(10)[:1], torch.tensor([5]))  # predicts class 0: a top-1 miss
    top1, _ = accuracy.compute()
    assert top1 == 0.75


def test_top_k_accuracy_with_fewer_than_five_classes():
    logits, labels = torch.randn(6, 3, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 0, 1, 2])
    accuracy = TopKAccuracy(3, CPU)
    accuracy.update(logits, labels)
    top1, top5 = accuracy.compute()
    torch.testing.assert_close(torch.tensor(top1), direct_top_k(logits, labels, 1), rtol=0, atol=0)
    assert top5 == 1.0  # top-5 of 3 classes is every class


def tiny_classifier() -> nn.Module:
    """Flatten, Dropout(0.5), a seeded Linear 3072->100: fast, and wrong unless evaluated in eval mode."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(3 * 32 * 32, NUM_CLASSES))


@pytest.fixture(scope="module")
def split() -> ImageSplit:
    """50 random uint8 images (50, 3, 32, 32) with random labels."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8, generator=generator)
    return ImageSplit(images, torch.randint(0, NUM_CLASSES, (50,), generator=generator))


@pytest.mark.parametrize("batch_size", [1, 3, 50, 1000])
def test_evaluate_matches_whole_set_computation(batch_size, split):
    net = tiny_classifier()
    net.eval()
    with torch.no_grad():
        logits = net(Normalization(32)(split.images))
    expected_loss = F.cross_entropy(logits.double(), split.labels).item()
    scores = evaluate(net, images(split), batch_size, NUM_CLASSES, FP32_CPU)
    # Per-batch float32 logits summed in float64: within float32 rounding of the direct value.
    torch.testing.assert_close(scores.loss, expected_loss, rtol=1e-6, atol=0)
    torch.testing.assert_close(torch.tensor(scores.top1), direct_top_k(logits, split.labels, 1), rtol=0, atol=0)
    torch.testing.assert_close(torch.tensor(scores.top5), direct_top_k(logits, split.labels, 5), rtol=0, atol=0)
    assert isinstance(scores, Scores)
    expected_confusion = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.int64)
    for label, predicted in zip(split.labels.tolist(), logits.argmax(dim=1).tolist()):
        expected_confusion[label, predicted] += 1
    assert torch.equal(scores.confusion, expected_confusion)
    # Every image's five best classes, best first, in the split's order (predictions/<strategy>/seed_<n>.npz).
    assert torch.equal(scores.top5_predictions, logits.topk(5).indices)


def test_top_classes_break_ties_like_argmax():
    logits = torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0, 2.0, 2.0]])
    assert top_classes(logits).tolist() == [[1, 2, 4, 5, 6]]
    assert top_classes(logits)[0, 0] == logits.argmax(dim=1)[0]
    assert top_classes(logits[:, :3]).shape == (1, 3)  # fewer than five classes: all of them


def test_confusion_counts_known_answer():
    predicted = torch.tensor([0, 2, 2, 1, 0, 2])
    labels = torch.tensor([0, 2, 1, 1, 2, 2])
    assert confusion_counts(predicted, labels, 3).tolist() == [[1, 0, 0], [0, 1, 1], [1, 0, 2]]


def test_superclass_top1_counts_mistakes_within_a_superclass_as_right():
    # Classes 0 and 1 form superclass 0, class 2 is superclass 1, class 3 has no image (-1).
    superclasses = torch.tensor([0, 0, 1, -1])
    confusion = torch.tensor([[5, 3, 2, 0], [1, 4, 0, 0], [2, 0, 6, 7], [0, 0, 0, 0]])
    # Right superclass: 5 + 3 + 1 + 4 (classes 0, 1) + 6 (class 2) = 19 of 30 images.
    assert superclass_top1(confusion, superclasses) == pytest.approx(19 / 30)


def test_evaluate_runs_in_eval_mode_and_restores_training_mode(split):
    net = tiny_classifier()
    net.eval()
    reference = evaluate(net, images(split), 16, NUM_CLASSES, FP32_CPU)
    assert not net.training
    net.train()
    in_train_mode = evaluate(net, images(split), 16, NUM_CLASSES, FP32_CPU)
    assert net.training and all(module.training for module in net.modules())
    # Dropout was off during evaluation.
    assert (in_train_mode.loss, in_train_mode.top1, in_train_mode.top5) == (
        reference.loss,
        reference.top1,
        reference.top5,
    )
    assert torch.equal(in_train_mode.confusion, reference.confusion)


@pytest.fixture(scope="module")
def weights_path(tmp_path_factory):
    """A seeded random ResNet18 state_dict standing in for ImageNet weights."""
    path = tmp_path_factory.mktemp("weights") / "w.pth"
    write_random_weights(path, seed=0)
    return path


@pytest.fixture(scope="module")
def shallow_net(weights_path):
    """The committed shallow strategy's network (only the Linear head trains)."""
    return build_network(
        PARAMS.strategy_named("shallow"), PARAMS.model.head, NUM_CLASSES, weights_path, PARAMS.strategy.seeds[0]
    )


def test_evaluate_restores_strategy_net_modes(shallow_net):
    pixels = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    eight = ImageSplit(pixels, torch.arange(8))
    shallow_net.train()
    evaluate(shallow_net, images(eight), 4, NUM_CLASSES, FP32_CPU)
    assert shallow_net.training and shallow_net.resnet.fc.training
    for block in shallow_net.frozen_blocks:  # still frozen: BatchNorm statistics stay put in training
        assert not any(module.training for module in block.modules())


def test_optimizer_holds_only_trainable_parameters(shallow_net, weights_path):
    optimizer = build_optimizer(shallow_net, PARAMS.strategy_named("shallow").training)
    (group,) = optimizer.param_groups
    assert len(group["params"]) == 2
    assert group["params"][0] is shallow_net.resnet.fc.weight
    assert group["params"][1] is shallow_net.resnet.fc.bias

    deep = build_network(
        PARAMS.strategy_named("deep"), PARAMS.model.head, NUM_CLASSES, weights_path, PARAMS.strategy.seeds[0]
    )
    expected = [
        parameter for name, parameter in deep.named_parameters() if name.startswith(("resnet.layer4.", "resnet.fc."))
    ]
    (deep_group,) = build_optimizer(deep, PARAMS.strategy_named("deep").training).param_groups
    assert len(deep_group["params"]) == 17  # 15 tensors in layer4, 2 in the head
    assert {id(parameter) for parameter in deep_group["params"]} == {id(parameter) for parameter in expected}


def test_committed_optimizer_settings(shallow_net):
    training = PARAMS.strategy_named("shallow").training
    optimizer = build_optimizer(shallow_net, training)
    assert type(optimizer) is torch.optim.SGD
    (group,) = optimizer.param_groups
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (
        training.lr,
        training.momentum,
        training.weight_decay,
        True,
    )


@pytest.mark.parametrize(("name", "kind"), [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_adaptive_optimizers(name, kind, shallow_net):
    training = dataclasses.replace(PARAMS.strategy, optimizer=name, lr=0.003)
    optimizer = build_optimizer(shallow_net, training)
    assert type(optimizer) is kind
    (group,) = optimizer.param_groups
    assert (group["lr"], group["weight_decay"]) == (0.003, PARAMS.strategy.weight_decay)


def test_sgd_without_momentum_is_plain_sgd(shallow_net):
    training = dataclasses.replace(PARAMS.strategy, momentum=0.0)  # allowed by config: momentum in [0, 1)
    (group,) = build_optimizer(shallow_net, training).param_groups
    assert (group["momentum"], group["nesterov"]) == (0.0, False)


def lr_per_epoch(shallow_net, **overrides) -> list[float]:
    """The lr each epoch trains with, stepping the scheduler once per epoch as fit() does."""
    training = dataclasses.replace(PARAMS.strategy, **overrides)
    optimizer = build_optimizer(shallow_net, training)
    scheduler = build_scheduler(optimizer, training)
    rates = []
    for _ in range(training.epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()  # no gradients: changes nothing, keeps the scheduler's call order as in fit()
        scheduler.step()
    return rates


def test_cosine_schedule(shallow_net):
    lr = 0.1
    rates = lr_per_epoch(shallow_net, scheduler="cosine", epochs=4, lr=lr)
    expected = [lr * (1 + math.cos(math.pi * epoch / 4)) / 2 for epoch in range(4)]  # lr, 0.854 lr, lr/2, 0.146 lr
    torch.testing.assert_close(rates, expected, rtol=1e-12, atol=1e-15)
    assert rates[0] == lr


def test_step_schedule(shallow_net):
    rates = lr_per_epoch(shallow_net, scheduler="step", epochs=7, lr=0.08, step_epochs=2, gamma=0.5)
    torch.testing.assert_close(rates, [0.08, 0.08, 0.04, 0.04, 0.02, 0.02, 0.01], rtol=1e-12, atol=0)


def test_constant_schedule(shallow_net):
    assert lr_per_epoch(shallow_net, scheduler="constant", epochs=5, lr=0.02) == [0.02] * 5
