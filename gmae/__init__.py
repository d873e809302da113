"""Gaussian Masked Autoencoders (GMAE, arXiv 2501.03229): pretraining core and evaluation suite."""

__version__ = "0.1.0"
