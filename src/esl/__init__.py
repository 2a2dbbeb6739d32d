"""ESL: entropy-guided self-training for unsupervised domain adaptation in semantic segmentation."""

__version__ = "0.1.0"
