"""The package version, in a leaf module so that any layer can record it without importing the package."""

__version__ = "0.3.0"
