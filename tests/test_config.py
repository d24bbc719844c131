"""params.yaml loading: the committed file validates, overrides apply per strategy, bad values fail in one line.

Every test but the first parses the test-owned TEST_PARAMS, never the committed values.
"""

import copy
import os
import subprocess
import sys
from collections.abc import Callable

import pytest
import yaml

from tests.support.project import copy_code, params_tree
from transfer import paths
from transfer.config import BACKBONE_BLOCKS, OFFICIAL_ARCHIVES, load_params, parse_params
from transfer.errors import UserError

PARAMS_FILE = paths.PROJECT_ROOT / paths.PARAMS_PATH


@pytest.fixture
def tree() -> dict:
    """A fresh copy of the test-owned params tree."""
    return params_tree()


def parse_mutated(tree: dict, mutate: Callable[[dict], None]):
    """parse_params on a deep copy of tree after mutate(copy)."""
    mutated = copy.deepcopy(tree)
    mutate(mutated)
    return parse_params(mutated)


def test_committed_params_load_and_validate():
    # Whatever values and strategies a user commits, they must parse; nothing here asserts them.
    params = load_params(PARAMS_FILE)
    assert params.strategies, "params.yaml defines no strategy"
    for name, strategy in params.strategies.items():
        assert strategy.name == name and strategy.training.seeds


def test_strategies_parse_their_blocks_and_share_the_hyperparameters(tree):
    params = parse_params(tree)
    assert list(params.strategies) == list(tree["strategies"])
    shallow, deep, scratch = (params.strategies[name] for name in ("shallow", "deep", "scratch"))
    assert (shallow.pretrained, shallow.train_layers) == (True, ())
    assert (deep.pretrained, deep.train_layers) == (True, ("layer4",))
    assert (scratch.pretrained, scratch.train_layers) == (False, BACKBONE_BLOCKS)
    # No strategy overrides anything, so each trains with the shared hyperparameters.
    for strategy in params.strategies.values():
        assert strategy.training == params.strategy
    assert params.strategy.epochs == tree["strategy"]["epochs"]


def test_strategy_override_changes_only_that_strategy(tree):
    params = parse_mutated(tree, lambda tree: tree["strategies"]["deep"].update(lr=0.1))
    assert params.strategies["deep"].training.lr == 0.1
    assert params.strategies["shallow"].training.lr == params.strategy.lr != 0.1
    assert params.strategies["scratch"].training.lr == params.strategy.lr
    # Every other hyperparameter of the overridden strategy is still the shared one.
    deep_training = params.strategies["deep"].training
    for field in ("epochs", "batch_size", "optimizer", "momentum", "weight_decay", "scheduler", "step_epochs", "gamma"):
        assert getattr(deep_training, field) == getattr(params.strategy, field)


def test_train_layers_order_does_not_matter(tree):
    params = parse_mutated(tree, lambda tree: tree["strategies"]["deep"].update(train_layers=["layer4", "layer3"]))
    assert params.strategies["deep"].train_layers == ("layer3", "layer4")


def set_key(section: str, key: str, value: object) -> Callable[[dict], None]:
    """A mutation setting tree[section][key] = value."""
    return lambda tree: tree[section].update({key: value})


def set_train_layers(value: object) -> Callable[[dict], None]:
    """A mutation setting strategies.deep.train_layers = value."""
    return lambda tree: tree["strategies"]["deep"].update(train_layers=value)


def rename_deep(new_name: str) -> Callable[[dict], None]:
    """A mutation renaming the deep strategy."""
    return lambda tree: tree["strategies"].update({new_name: tree["strategies"].pop("deep")})


def set_deep(**fields) -> Callable[[dict], None]:
    """A mutation setting keys of strategies.deep; phases replace its train_layers unless both are given."""

    def mutate(tree: dict) -> None:
        deep = tree["strategies"]["deep"]
        if "phases" in fields and "train_layers" not in fields:
            deep.pop("train_layers")
        deep.update(fields)

    return mutate


def shared_lr_and_deep(lr: object, **fields) -> Callable[[dict], None]:
    """A mutation setting strategy.lr and keys of strategies.deep."""
    return lambda tree: (tree["strategy"].update(lr=lr), set_deep(**fields)(tree))


# (mutation, fragments the one-line message must contain: the key, the bad value, what is valid)
BAD_INPUTS = {
    "unknown key": (set_key("strategy", "lrr", 0.1), ["strategy.lrr", "did you mean 'strategy.lr'"]),
    "negative lr": (set_key("strategy", "lr", -0.5), ["strategy.lr", "-0.5", "above 0"]),
    "zero epochs": (set_key("strategy", "epochs", 0), ["strategy.epochs", "= 0", "above 0"]),
    "image_size 16": (set_key("data", "image_size", 16), ["data.image_size", "16", "32 to 512"]),
    "image_size 600": (set_key("data", "image_size", 600), ["data.image_size", "600", "32 to 512"]),
    "optimizer rmsprop": (
        set_key("strategy", "optimizer", "rmsprop"),
        ["strategy.optimizer", "rmsprop", "sgd, adam, adamw"],
    ),
    "scheduler poly": (
        set_key("strategy", "scheduler", "poly"),
        ["strategy.scheduler", "poly", "cosine, step, constant"],
    ),
    "device tpu": (set_key("compute", "device", "tpu"), ["compute.device", "tpu", "auto, cpu, cuda, mps"]),
    "train_layers layer5": (
        set_train_layers(["layer5"]),
        ["strategies.deep.train_layers", "layer5", ", ".join(BACKBONE_BLOCKS)],
    ),
    "train_layers not a suffix": (
        set_train_layers(["layer3"]),
        ["strategies.deep.train_layers", "layer3", "last ones", "[layer4]"],
    ),
    "strategy name uppercase": (rename_deep("Deep"), ["strategy name", "'Deep'", "lowercase"]),
    "strategy name with space": (rename_deep("deep l3"), ["strategy name", "'deep l3'", "lowercase"]),
    "bool for int": (set_key("strategy", "epochs", True), ["strategy.epochs", "True", "whole number"]),
    "md5 not hex": (set_key("data", "md5", "z" * 32), ["data.md5", "z" * 32, "32 hex"]),
    "unknown top-level key": (lambda tree: tree.update(strategie={}), ["'strategie'", "did you mean 'strategies'"]),
    "seeds not a list": (set_key("strategy", "seeds", 3), ["strategy.seeds", "3", "a list, e.g. [0, 1, 2]"]),
    "seeds empty": (set_key("strategy", "seeds", []), ["strategy.seeds", "empty", "at least one seed"]),
    "seeds repeated": (
        set_key("strategy", "seeds", [0, 1, 0]),
        ["strategy.seeds", "[0, 1, 0]", "repeats 0", "distinct"],
    ),
    "seed negative": (set_key("strategy", "seeds", [0, -1]), ["strategy.seeds", "-1", "0 to 4294967295"]),
    "seed not a number": (set_key("strategy", "seeds", [0, "one"]), ["strategy.seeds[1]", "'one'", "whole number"]),
    "split_seed negative": (set_key("data", "split_seed", -3), ["data.split_seed", "-3", "0 to 4294967295"]),
    "lr list empty": (set_key("strategy", "lr", []), ["strategy.lr", "[]", "non-empty list"]),
    "lr list with text": (set_key("strategy", "lr", [0.05, "fast"]), ["strategy.lr[1]", "'fast'", "finite number"]),
    "lr list with zero": (set_key("strategy", "lr", [0.05, 0]), ["strategy.lr[1]", "= 0.0", "above 0"]),
    "strategy lr list negative": (set_deep(lr=[-0.1]), ["strategies.deep.lr[0]", "-0.1", "above 0"]),
    "phases empty": (set_deep(phases=[]), ["strategies.deep.phases", "[]", "non-empty list of phases"]),
    "phases not a list": (
        set_deep(phases={"train_layers": []}),
        ["strategies.deep.phases", "non-empty list of phases"],
    ),
    "phase unknown key": (
        set_deep(phases=[{"train_layers": [], "epoch": 2}]),
        ["strategies.deep.phases[0].epoch", "did you mean 'strategies.deep.phases[0].epochs'"],
    ),
    "phase sets seeds": (
        set_deep(phases=[{"train_layers": [], "seeds": [1]}]),
        ["strategies.deep.phases[0].seeds", "whole strategy"],
    ),
    "phase without train_layers": (set_deep(phases=[{"epochs": 2}]), ["strategies.deep.phases[0].train_layers"]),
    "phase train_layers layer5": (
        set_deep(phases=[{"train_layers": []}, {"train_layers": ["layer5"]}]),
        ["strategies.deep.phases[1].train_layers", "layer5", ", ".join(BACKBONE_BLOCKS)],
    ),
    "phase lr list": (
        set_deep(phases=[{"train_layers": [], "lr": [0.1, 0.01]}]),
        ["strategies.deep.phases[0].lr", "one number"],
    ),
    "phase lr negative": (set_deep(phases=[{"train_layers": [], "lr": -1}]), ["strategies.deep.phases[0].lr", "-1"]),
    "phases and train_layers": (
        set_deep(phases=[{"train_layers": []}], train_layers=["layer4"]),
        ["strategies.deep", "both train_layers and phases"],
    ),
    "lr list unused by every phase": (
        shared_lr_and_deep([0.05, 0.005], phases=[{"train_layers": [], "lr": 0.1}]),
        ["strategies.deep", "every phase sets its own lr", "[0.05, 0.005]"],
    ),
    "cifar stem on pretrained": (set_deep(stem="cifar"), ["strategies.deep.stem", "pretrained: false", "7x7"]),
    "unknown stem": (set_deep(stem="tiny"), ["strategies.deep.stem", "tiny", "imagenet, cifar"]),
    "unknown dataset": (set_key("data", "dataset", "imagenet"), ["data.dataset", "'imagenet'", "cifar100, cifar10"]),
    "cifar10 with cifar100's url": (
        lambda tree: tree["data"].update(dataset="cifar10", source=OFFICIAL_ARCHIVES["cifar100"][0]),
        ["data.source", "cifar100 archive's", *OFFICIAL_ARCHIVES["cifar10"]],
    ),
    "cifar10 with cifar100's md5": (
        lambda tree: tree["data"].update(dataset="cifar10", source="/data/cifar-10-python.tar.gz"),
        ["data.md5", "cifar100 archive's", "c58f30108f718f92721af3b95e74349a"],
    ),
    "cifar100 with cifar10's md5": (
        lambda tree: tree["data"].update(source="/data/a.tar.gz", md5=OFFICIAL_ARCHIVES["cifar10"][1]),
        ["data.md5", "cifar10 archive's", "data.dataset = cifar100", "eb9058c3a382ffc7106e4002c42a8d85"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_one_line_user_error(tree, case):
    mutate, fragments = BAD_INPUTS[case]
    with pytest.raises(UserError) as raised:
        parse_mutated(tree, mutate)
    message = str(raised.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from {message!r}"


def test_seeds_default_to_the_shared_list_and_can_be_overridden_per_strategy(tree):
    params = parse_mutated(tree, lambda tree: tree["strategies"]["deep"].update(seeds=[3, 4]))
    assert params.strategies["deep"].training.seeds == (3, 4)
    assert params.strategies["shallow"].training.seeds == params.strategy.seeds == tuple(tree["strategy"]["seeds"])


def test_override_errors_name_the_strategy(tree):
    with pytest.raises(UserError, match=r"^strategies\.deep\.lr = -1\.0 is invalid"):
        parse_mutated(tree, lambda tree: tree["strategies"]["deep"].update(lr=-1))


def test_bad_lr_on_the_command_line_exits_2_with_one_line(tmp_path, tree):
    copy_code(tmp_path)
    bad_tree = copy.deepcopy(tree)
    bad_tree["strategy"]["lr"] = -1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(bad_tree))
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}  # import the copy, from cwd
    result = subprocess.run(
        [sys.executable, "-m", "stages.prepare"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "strategy.lr" in lines[0]
    assert not (tmp_path / "data").exists()
