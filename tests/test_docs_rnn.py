"""docs/rnn.md's example (an interactive session that trains a tiny caption decoder) runs
as written and prints what the page says."""

from __future__ import annotations

import doctest
from pathlib import Path

PAGE = Path(__file__).resolve().parent.parent / "docs" / "rnn.md"


def test_sequence_page_example_runs():
    result = doctest.testfile(str(PAGE), module_relative=False, verbose=False,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 10
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"
