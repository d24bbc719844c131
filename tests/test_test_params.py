"""The test params cover every kind of strategy the committed defaults use, so no test checks a configuration
unlike the one users run (a strategy with phases once broke `dvc plots show` while every test passed)."""

import yaml

from tests.support.project import params_tree
from transfer import paths

PHASE_PREFIX = "phases[]."  # a key set inside a phase, apart from the same key set on the strategy


def strategy_key_kinds(strategies: dict) -> set[str]:
    """Each strategy key in use, with its kind where one key has several: 'lr' (one rate) or 'lr list'."""
    kinds = set()
    for entry in strategies.values():
        for key, value in entry.items():
            kinds.add(f"{key} list" if key == "lr" and isinstance(value, list) else key)
            if key == "augment" and value is False:
                kinds.add("augment: false")  # the cached-features path
        for phase in entry.get("phases", []):
            kinds |= {PHASE_PREFIX + key for key in phase}
    return kinds


def test_every_strategy_key_of_the_committed_defaults_is_used_by_a_test_strategy():
    # A guard on coverage, not on values: only the committed strategies' keys are read.
    committed = yaml.safe_load((paths.PROJECT_ROOT / paths.PARAMS_PATH).read_text())["strategies"]
    uncovered = strategy_key_kinds(committed) - strategy_key_kinds(params_tree()["strategies"])
    assert not uncovered, f"the committed params.yaml uses {sorted(uncovered)}; add them to TEST_PARAMS"


def test_test_params_hold_every_kind_of_strategy():
    kinds = strategy_key_kinds(params_tree()["strategies"])
    assert {"phases", "lr", "lr list", "augment: false", "stem", PHASE_PREFIX + "lr"} <= kinds


def test_the_guard_sees_a_key_only_the_defaults_use():
    # The guard above can fail: a key inside a phase that no test strategy sets is reported.
    defaults = {"lpft": {"phases": [{"train_layers": [], "momentum": 0.5}]}}
    assert PHASE_PREFIX + "momentum" in strategy_key_kinds(defaults) - strategy_key_kinds(params_tree()["strategies"])
