"""A cheap synthetic task: an editable config scored by a random hyperparameter-like response surface."""
