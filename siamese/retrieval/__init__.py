"""Embeddings meet the index package: building and extending indexes, calibration of same/different,
the open-set answer, evaluation and bundles."""
