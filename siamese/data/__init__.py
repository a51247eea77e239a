"""Items in: every kind of source (sources/), the ItemSet container, normalisation, labels, pairs and
augmentation. Knows nothing of models."""
