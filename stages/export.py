"""Stage export@<strategy>: models/<strategy>.onnx, the trained network in ONNX, checked against PyTorch.

Run as: python -m stages.export <strategy> (reads models/<strategy>.pt; the work is transfer/models/onnx_export.py).
"""

import argparse

from transfer.errors import run_stage
from transfer.models.artifacts import warn_if_not_artifacts
from transfer.models.onnx_export import export


def main(argv: list[str] | None = None) -> None:
    """Export the strategy named on the command line."""
    parser = argparse.ArgumentParser(prog="python -m stages.export", description=__doc__.splitlines()[0])
    parser.add_argument("strategy", help="a key of `strategies` in params.yaml whose models/<strategy>.pt exists")
    strategy = parser.parse_args(argv).strategy
    export(strategy)
    warn_if_not_artifacts(strategy)


if __name__ == "__main__":
    run_stage(main)
