"""The `siamese` command (`python -m siamese`)."""

from .main import main

__all__ = ["main"]
