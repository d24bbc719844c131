"""What the train stage writes once a strategy's runs are done: the model file, per-seed and combined results.

Layout (transfer/paths.py): models/<strategy>.pt; results/<strategy>/{metrics,history,confusion,
timing,provenance,lr_search}.json; results/<strategy>/seeds/seed_<n>/ per run; and
predictions/<strategy>/seed_<n>.npz, every test image's top-5 classes, for the paired statistics.
"""

import shutil

from transfer import paths
from transfer.aggregate import combine_histories, combine_metrics
from transfer.atomic import save_npz, save_torch, write_json
from transfer.compute.device import Compute
from transfer.models.network import StrategyNet
from transfer.provenance import library_versions
from transfer.training.context import RunContext
from transfer.training.prepared_data import PreparedData
from transfer.training.runs import SeedRun, StrategyRuns, resolved_config


def provenance(run: RunContext, model_seed: int) -> dict:
    """What produced a result: the strategy, its resolved config, the saved model's seed, library versions, device."""
    return {
        "strategy": run.strategy.name,
        "model_seed": model_seed,
        "config": resolved_config(run.params, run.strategy),
        "versions": library_versions(),
        "device": run.compute.describe(),
        "compute_used": run.compute.record(),  # compute.* as resolved here: 'auto' settled to what ran
        # A smaller training set's run only (data.train_sizes): the whole split's provenance stays as it was.
        **(
            {"train_per_class": run.train_per_class, "passes_per_epoch": run.passes_per_epoch}
            if run.train_per_class
            else {}
        ),
    }


def save_model(run: RunContext, net: StrategyNet, model_seed: int) -> None:
    """models/<strategy>.pt: the chosen seed's weights in torchvision's layout, and what it takes to use them."""
    checkpoint = {
        # On the CPU in the default layout, so loading never depends on where or how it was trained.
        "state_dict": {key: value.detach().cpu().contiguous() for key, value in net.resnet.state_dict().items()},
        "class_names": list(run.data.class_names),
        "normalization": run.normalization.record(),
        **provenance(run, model_seed),
    }
    save_torch(checkpoint, paths.model_path(run.output_name))


def write_strategy_results(run: RunContext, strategy_runs: StrategyRuns, total_seconds: float) -> None:
    """Every output of train@<strategy> (or train_subset@...), then the run's checkpoints are removed.

    run is the strategy at its chosen lr.
    """
    name, runs = run.output_name, strategy_runs.runs
    save_model(run, strategy_runs.model_net, strategy_runs.model_run.seed)
    for seed_run in runs:
        write_seed_results(name, seed_run, run.data)
    search = strategy_runs.search
    write_json(paths.lr_search_path(name), search.rows)
    write_json(paths.history_path(name), combine_histories([seed_run.history for seed_run in runs]))
    # The compute used sits beside the scores, so `dvc metrics diff` shows when two results ran differently.
    metrics = {
        **combine_metrics([seed_run.metrics for seed_run in runs]),
        "lr_factor": search.chosen.factor,
        "lr_candidates": len(search.rows),
        "tuning_flops": search.tuning_flops,  # the search's runs beyond the chosen one; 0 without a search
        **used_compute_fields(run.compute),
    }
    write_json(paths.metrics_path(name), metrics)
    write_json(paths.confusion_path(name), confusion_record(run.data, runs))
    write_json(paths.provenance_path(name), provenance(run, strategy_runs.model_run.seed))
    timing = {**combined_timing(runs, total_seconds, run.compute), "tuning_seconds": search.tuning_seconds}
    write_json(paths.timing_path(name), timing)
    shutil.rmtree(paths.checkpoint_dir(name), ignore_errors=True)  # every seed's


def write_seed_results(strategy_name: str, run: SeedRun, data: PreparedData) -> None:
    """results/<strategy>/seeds/seed_<n>/: that run's metrics, history, confusion counts and timing."""
    folder = paths.seed_dir(strategy_name, run.seed)
    write_json(folder / paths.METRICS_FILE, run.metrics)
    write_json(folder / paths.HISTORY_FILE, run.history)
    write_json(folder / paths.CONFUSION_FILE, confusion_record(data, [run]))
    write_json(folder / paths.TIMING_FILE, run.timing)
    write_predictions(strategy_name, run, data)


def write_predictions(strategy_name: str, run: SeedRun, data: PreparedData) -> None:
    """predictions/<strategy>/seed_<n>.npz: `top5` (N, 5) and `labels` (N,) int64 of the test set, in its order."""
    arrays = {"top5": run.top5_predictions.numpy(), "labels": data.test_labels.astype("int64")}
    save_npz(paths.predictions_path(strategy_name, run.seed), arrays)


def confusion_record(data: PreparedData, runs: list[SeedRun]) -> dict:
    """confusion.json: test-set counts[actual][predicted] summed over the runs, with the names to read them by."""
    return {
        "seeds": [run.seed for run in runs],
        "class_names": list(data.class_names),
        "coarse_class_names": list(data.coarse_class_names),
        "fine_to_coarse": data.fine_to_coarse.tolist(),
        "counts": sum(run.confusion for run in runs).tolist(),
    }


def used_compute_fields(compute: Compute) -> dict:
    """metrics.json's provenance fields: the device type and precision that produced the scores."""
    record = compute.record()
    return {"device": record["device"], "precision": record["precision"]}


def combined_timing(runs: list[SeedRun], total_seconds: float, compute: Compute) -> dict:
    """timing.json: the whole stage's seconds, and per seed, so the cost of one more seed is plain."""
    seed_seconds = [run.timing["total_seconds"] for run in runs]
    return {
        "total_seconds": round(total_seconds, 2),  # this process only, when resumed
        "seconds_per_seed": round(sum(seed_seconds) / len(runs), 2),
        "seed_seconds": seed_seconds,
        "train_images_per_second": round(sum(run.timing["train_images_per_second"] for run in runs) / len(runs), 1),
        "device": compute.describe(),
    }
