"""Segment sizes: positive for a whole matrix, possibly zero on a column shard."""

import pytest

from gradbalance._checks import check_segments


def test_a_shard_may_hold_none_of_a_segment_but_a_matrix_may_not():
    assert check_segments([3, 0, 2], 5, name="local_segments", allow_empty=True) == [3, 0, 2]
    with pytest.raises(ValueError, match="segments: sizes must be positive, segment 1 has size 0"):
        check_segments([3, 0, 2], 5)
    with pytest.raises(ValueError, match="local_segments: sizes must be non-negative, segment 0 has size -1"):
        check_segments([-1, 6], 5, name="local_segments", allow_empty=True)
    with pytest.raises(ValueError, match=r"local_segments must sum to the number of columns \(5\)"):
        check_segments([1, 1], 5, name="local_segments", allow_empty=True)
    assert check_segments(None, 7) == [7]
