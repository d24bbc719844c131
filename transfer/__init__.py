"""The library behind the pipeline: data, the ResNet18 strategies, the training recipe and the report.

The DVC stages in `stages/` are thin entry points over these modules; import from here in a notebook
or a test (e.g. `from transfer.training.recipe import fit`).
"""
