"""The version of hefed (one place; ``hefed.__version__`` and the Flower app read it)."""

__version__ = "0.1.0"
