"""The package version, in one place (setuptools reads it through ``warmgate.__version__``)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
