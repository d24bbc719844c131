"""What data.train_sizes adds to a run, in the pipeline's own training FLOPs (transfer/training/flops.py).

Run as: python -m benchmarks.data_budget_cost [--sizes 10 100] [--train-images 45000] [--classes 100]
Reads params.yaml (strategies, schedules, data.val_size, data.subset_min_steps) and prints, per strategy and
for all of them, the FLOPs of one seed's run on the whole split and on each size (with the budget rule's
passes per epoch), and the ratio of the run with the sizes to the run without. No training: the count is
deterministic and the same on every machine (docs/data-budget.md gives a measured time beside it).
"""

import argparse
import dataclasses

from transfer.config import Params, StrategyConfig, load_params
from transfer.models.network import build_network, with_train_layers
from transfer.training.flops import RunShape, cumulative_flops_by_epoch
from transfer.training.subset import passes_per_epoch


def run_flops(params: Params, strategy: StrategyConfig, train_images: int, classes: int, passes: int) -> int:
    """One seed's training FLOPs of strategy on train_images, validating on data.val_size after each epoch."""
    # The weights do not change the count: a random backbone spares loading the pretrained file.
    net = build_network(dataclasses.replace(strategy, pretrained=False), params.model.head, classes, None, 0)
    return sum(
        cumulative_flops_by_epoch(
            with_train_layers(net, phase.train_layers),
            RunShape(
                batches_kind="images",  # an augmented strategy runs every image through the network each step
                image_size=params.data.image_size,
                batch_size=phase.training.batch_size,
                train_images=train_images,
                val_images=params.data.val_size,
                epochs=phase.training.epochs,
                passes_per_epoch=passes,
            ),
        )[-1]
        for phase in strategy.run_phases()
    )


def main(argv: list[str] | None = None) -> None:
    """Command line: print each strategy's FLOPs at every size and the ratio with sizes to without."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.data_budget_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100], help="images per class (default 10 100)")
    parser.add_argument("--train-images", type=int, default=45000, help="the whole training split (CIFAR: 45,000)")
    parser.add_argument("--classes", type=int, default=100)
    arguments = parser.parse_args(argv)
    params = load_params()
    whole, with_sizes = 0, 0
    for name, strategy in params.strategies.items():
        full = run_flops(params, strategy, arguments.train_images, arguments.classes, passes=1)
        cells = [f"all {full:.3e}"]
        extra = 0
        for size in arguments.sizes:
            images = size * arguments.classes
            passes = passes_per_epoch(strategy, images, params.data.subset_min_steps)
            flops = run_flops(params, strategy, images, arguments.classes, passes)
            cells.append(f"{size}/class {flops:.3e} ({passes} passes/epoch)")
            extra += flops
        print(f"{name}: {', '.join(cells)}; ratio {(full + extra) / full:.3f}")
        whole, with_sizes = whole + full, with_sizes + full + extra
    print(f"every strategy: ratio {with_sizes / whole:.3f}")


if __name__ == "__main__":
    main()
