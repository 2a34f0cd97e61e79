"""minbert_tasks: multi-task minBERT fine-tuning on SST-5, Quora paraphrase and STS-B, built on
gradbalance (every multi-task step goes through its task-gradient buffer and a combiner)."""

from gradbalance import __version__  # one distribution, one version

__all__ = ["__version__"]
