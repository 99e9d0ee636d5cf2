"""Say so when a folder named ``cnnlab`` is imported in place of the package.

A checkout of this repository cloned into a folder named ``cnnlab`` holds the package one
level down, in ``cnnlab/cnnlab``. A script run beside the checkout has the checkout's
parent folder first on ``sys.path``, so ``import cnnlab`` finds the checkout folder and,
as it has no ``__init__.py``, makes an empty namespace package of it, ahead of the
installed package: ``cnnlab.manual_seed`` then fails with a bare ``AttributeError``.

Nothing of cnnlab runs for the namespace package itself, but with an editable install
(``pip install -e``) every submodule (``cnnlab.nn``, ``cnnlab.data``, ...) is still found
and imports this module first, which recognizes the situation and raises an ImportError
that says what happened and what to do.
"""

from __future__ import annotations

import os
import sys

__all__ = ["check_package"]


def _problem(package: object) -> str | None:
    """The message for a ``cnnlab`` module that is not this package, or None."""
    if package is None or getattr(package, "__file__", None) is not None:
        return None  # the real package (or not imported yet)
    folders = [str(p) for p in getattr(package, "__path__", [])]
    checkouts = [f for f in folders if os.path.isfile(os.path.join(f, "cnnlab", "__init__.py"))]
    found = checkouts[0] if checkouts else (folders[0] if folders else "a folder")
    inside = os.path.join(found, "cnnlab")
    what = "a checkout of cnnlab" if checkouts else "a folder without an __init__.py"
    return (
        f"'import cnnlab' found the folder {found} ({what}) instead of the cnnlab package"
        f"{f' (which is in {inside})' if checkouts else ''}: a folder named cnnlab in the "
        "directory a script runs from (or the current directory) comes first on sys.path "
        "and hides the installed package. Run the script from another folder, or rename "
        "the folder (e.g. clone the repository as cnnlab-src)."
    )


def check_package() -> None:
    """Raise ImportError when ``sys.modules["cnnlab"]`` is a folder, not this package.

    Raises:
        ImportError: naming the folder that was imported and what to do.
    """
    message = _problem(sys.modules.get("cnnlab"))
    if message is not None:
        raise ImportError(message)


check_package()
