"""The tasks cnnlab trains for, one module each (see :mod:`cnnlab.tasks.base`).

``cnnlab train --task NAME``; a model file's spec says its task, so ``evaluate`` and
``predict`` find it again.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util

from cnnlab.tasks.base import Prepared, Recipe, Task

__all__ = ["NAMES", "Prepared", "Recipe", "Task", "get"]

# Task name -> module defining it (loaded on first use).
NAMES: dict[str, str] = {
    "classify": "cnnlab.tasks.classify",
    "segment": "cnnlab.tasks.segment",
    "detect": "cnnlab.tasks.detect",
    "keypoints": "cnnlab.tasks.keypoints",
    "caption": "cnnlab.tasks.caption",
}
_TASKS: dict[str, Task] = {}


def available() -> list[str]:
    """The task names whose modules are installed, in a fixed order."""
    return [name for name, module in NAMES.items() if importlib.util.find_spec(module)]


def get(name: str) -> Task:
    """The task called ``name``.

    Raises:
        ValueError: for an unknown task (listing the known ones).
    """
    if name not in _TASKS:
        if name not in NAMES or name not in available():
            close = difflib.get_close_matches(str(name), available(), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown task {name!r}{hint}; known tasks: "
                             f"{', '.join(available())}")
        module = importlib.import_module(NAMES[name])
        found = [v for v in vars(module).values()
                 if isinstance(v, type) and issubclass(v, Task) and v.name == name]
        _TASKS[name] = found[0]()
    return _TASKS[name]
