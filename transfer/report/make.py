"""The plots stage's work in order: read every strategy's results, compare, then write data, figures and report."""

from transfer import paths
from transfer.atomic import atomic_path
from transfer.config import Params
from transfer.report import comparison, cost, data_budget, verdict
from transfer.report.figures import draw_figures
from transfer.report.layout import REPORT_PATH
from transfer.report.page import report
from transfer.report.plot_data import write_data
from transfer.report.strategy_result import load_result


def make_report(params: Params) -> None:
    """Everything under plots/ for the strategies of params; nothing is written unless every input reads."""
    results = [load_result(strategy) for strategy in params.strategies.values()]
    # Read and checked before anything is written: a bad predictions file leaves plots/ as it was.
    names = [result.strategy.name for result in results]
    loaded = (
        comparison.load_strategies(
            {result.strategy.name: result.metrics for result in results},
            {result.strategy.name: result.confusion["seeds"] for result in results},
        )
        if len(results) >= 2
        else {}  # nothing to compare: one strategy needs no predictions
    )
    pairs = comparison.compare_strategies(loaded)
    top1 = {name: predictions.top1_correct for name, predictions in loaded.items()}  # params.yaml's order
    outcomes = data_budget.read_data_budget(params, results, top1)  # data.train_sizes: every size's results
    write_data(results)
    draw_figures(results)
    cost_rows, cost_section = cost.write_cost(results)
    opening = verdict.write_verdict(params, results, top1, cost_rows)
    budget_section = data_budget.write_data_budget(outcomes)  # after the verdict: it adds best_at to verdict.json
    sections = comparison.write_comparison(pairs, names) + "\n" + cost_section
    sections += f"\n{budget_section}" if budget_section else ""
    with atomic_path(REPORT_PATH) as temp_path:
        temp_path.write_text(report(params, results, opening) + "\n" + sections)
    print(f"plots: {len(results)} strategies -> {paths.PLOTS_DIR}/")
