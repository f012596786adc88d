"""jarvis-moe: the Mixture-of-Experts category analyser for the Jarvis pipeline."""

__version__ = "0.1.0"
