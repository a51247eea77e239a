"""Errors of the index package (kept separate so `index` never imports `siamese`)."""


class VectorIndexError(ValueError):
    """Bad input to an index or a damaged/mismatched index file; the message says what to do."""
