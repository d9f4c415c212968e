"""somna: a memory that learns, for coding agents."""

__version__ = "0.1.0"
