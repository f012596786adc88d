"""jarvis-moe: the Mixture-of-Experts category analyser for the Jarvis pipeline."""

__version__ = "0.2.0"
