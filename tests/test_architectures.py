"""model.arch: each ResNet's ImageNet release, its head width, and weights of another architecture refused."""

import re
from pathlib import Path

import pytest
import torch

from tests.support.project import params_tree
from transfer.config import ARCHITECTURES, parse_params
from transfer.errors import UserError
from transfer.models.backbone import build_resnet, load_backbone_state
from transfer.models.network import build_network
from transfer.sources.weights import IMAGENET_RELEASES

HEAD_INPUTS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}  # channels out of layer4


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_each_release_pins_a_full_sha256_whose_prefix_is_in_the_file_name(arch: str) -> None:
    release = IMAGENET_RELEASES[arch]
    assert re.fullmatch(r"[0-9a-f]{64}", release.sha256) and release.size > 0
    assert release.url == f"https://download.pytorch.org/models/{arch}-{release.sha256[:8]}.pth"


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_head_reads_its_input_width_from_the_network(arch: str, tmp_path: Path) -> None:
    strategy = parse_params(params_tree()).strategy_named("scratch")  # not pretrained: no weights file read
    head = parse_params(params_tree()).model.head
    net = build_network(strategy, head, 7, tmp_path / "unused.pth", seed=0, arch=arch)
    assert net.resnet.fc.in_features == HEAD_INPUTS[arch] and net.resnet.fc.out_features == 7
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 7)


def test_unknown_arch_lists_the_supported_ones() -> None:
    with pytest.raises(UserError, match="model.arch = 'vgg16' is invalid: use one of resnet18, resnet34, resnet50"):
        parse_params(params_tree({"model": {"arch": "vgg16"}}))


def test_weights_of_another_arch_say_which_they_look_like(tmp_path: Path) -> None:
    path = tmp_path / "resnet34.pth"
    torch.save(build_resnet("resnet34").state_dict(), path)
    assert set(load_backbone_state(path, "resnet34")) == set(build_resnet("resnet34").state_dict())
    with pytest.raises(UserError) as raised:
        load_backbone_state(path, "resnet18")
    message = str(raised.value)
    assert "\n" not in message and str(path) in message
    assert "not a torchvision resnet18 state_dict" in message and "set model.arch: resnet34" in message
