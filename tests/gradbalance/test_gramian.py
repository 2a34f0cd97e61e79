"""The Gramian pass keeps full float32 products on CUDA whatever TF32 setting the user chose.

Each case runs in its own interpreter: torch remembers which TF32 API a process used and
refuses to mix them, so one case would poison the next."""

import subprocess
import sys
import textwrap

import pytest

CASES = {
    # The legacy flag, switched off inside and restored after.
    "legacy": """
        m.allow_tf32 = True
        with full_float32_matmul():
            assert m.allow_tf32 is False
        assert m.allow_tf32 is True
    """,
    # The newer API, likewise, without touching the legacy flag (mixing them is an error).
    "fp32_precision": """
        m.fp32_precision = "tf32"
        with full_float32_matmul():
            assert m.fp32_precision == "ieee", m.fp32_precision
        assert m.fp32_precision == "tf32"
    """,
    # TF32 already off: nothing written, so the user may still choose the newer API afterwards.
    "untouched": """
        with full_float32_matmul():
            pass
        m.fp32_precision = "tf32"
        assert m.fp32_precision == "tf32"
    """,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_tf32_is_off_inside_and_restored_after(case):
    code = (
        "import torch\nfrom gradbalance._gramian import full_float32_matmul\nm = torch.backends.cuda.matmul\n"
    )
    code += textwrap.dedent(CASES[case])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
