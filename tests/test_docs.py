"""The examples in the documentation pages run as written (doctest over the Markdown)."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
TESTED = ["ops.md"]


@pytest.mark.parametrize("page", TESTED)
def test_examples_in_page_run(page):
    result = doctest.testfile(str(DOCS / page), module_relative=False,
                              optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.attempted > 0, f"{page} has no examples"
    assert result.failed == 0, f"{result.failed} example(s) in docs/{page} failed (see above)"
