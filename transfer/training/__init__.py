"""The train stage's library: the recipe, a strategy's runs over seeds, checkpoints and what a run writes."""
