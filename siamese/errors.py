"""The library's own error type: every user mistake surfaces as a SiameseError."""


class SiameseError(ValueError):
    """Bad input or a file that cannot be used; the message says what to do."""
