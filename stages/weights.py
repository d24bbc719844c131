"""Stage weights: put ResNet18 backbone weights in models/pretrained/ (ImageNet, a local file, or seeded random).

Run as: python -m stages.weights (reads model.weights and model.random_weights_seed from params.yaml).
"""

import argparse

from transfer import paths
from transfer.config import load_params
from transfer.errors import run_stage
from transfer.sources.weights import obtain_weights


def main(argv: list[str] | None = None) -> None:
    """Command line: python -m stages.weights."""
    argparse.ArgumentParser(prog="python -m stages.weights", description=__doc__.splitlines()[0]).parse_args(argv)
    model = load_params().model
    obtain_weights(model, paths.PRETRAINED_PATH)
    print(f"weights: {paths.PRETRAINED_PATH} from {model.weights}")


if __name__ == "__main__":
    run_stage(main)
