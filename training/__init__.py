"""Training stage: prepare the feature table, train and register a model, promote it."""
