"""An inverse-gradient-norm combiner for gradbalance."""

from inverse_norm.plugin import InverseNorm

__all__ = ["InverseNorm"]
