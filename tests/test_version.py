"""One version for the distribution and both packages, from gradbalance.__version__."""

from importlib.metadata import version

import gradbalance
import minbert_tasks


def test_one_version_everywhere():
    assert version("gradbalance") == gradbalance.__version__ == minbert_tasks.__version__
