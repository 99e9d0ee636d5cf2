"""What a new user runs into: explain's wording, the progress bar on a narrow terminal, and a
checkout folder named cnnlab that hides the package."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import cnnlab
from cnnlab.inspect.explain import explain_conv, explain_pool
from cnnlab.train import ProgressBar, fit

PACKAGE = Path(cnnlab.__file__).resolve().parent


# ----------------------------------------------------------------------------- explain


def test_sums_with_negative_terms_read_as_subtractions():
    x = np.ones((3, 2, 2), np.float32)
    w = np.stack([np.full((1, 2, 2), v, np.float32) for v in (1, 1, -1)], axis=1)
    text = explain_conv(x, w, np.zeros(1, np.float32)).render()
    assert "sum over channels: 4 + 4 - 4 = 4" in text
    assert "+ -" not in text
    pool = explain_pool(np.array([[[1, 4], [-1, 2]]], np.float32), 2, mode="avg")
    assert pool.cell(0, 0, 0)["terms"] == "(1 + 4 - 1 + 2)/4"


def test_padding_is_described_only_when_there_is_some():
    pool = explain_pool(np.zeros((1, 4, 4), np.float32), 2).render()
    assert "Input 1x4x4 (no padding)" in pool and "padded by 0" not in pool
    padded = explain_pool(np.zeros((1, 4, 4), np.float32), 3, stride=1, padding=1).render()
    assert "Input, padded by 1 with -inf, which never wins the maximum -> 1x6x6" in padded
    conv = explain_conv(np.zeros((1, 3, 3), np.float32), np.zeros((1, 1, 2, 2), np.float32))
    assert "Input 1x3x3 (no padding)" in conv.render()


# ----------------------------------------------------------------------------- progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("columns", [0, 20])
def test_a_terminal_too_narrow_for_a_bar_gets_the_epoch_lines(columns, monkeypatch):
    pytest.importorskip("tqdm")
    import shutil

    monkeypatch.setattr(shutil, "get_terminal_size", lambda fallback=None: os.terminal_size(
        (columns, 24)))
    out = _Terminal()
    cnnlab.manual_seed(0)
    model = cnnlab.arch.build("fc2", (1, 2, 2))
    x = np.random.default_rng(0).random((8, 1, 2, 2), dtype=np.float32)
    fit(model, cnnlab.optim.SGD(model.parameters(), lr=0.1), (x, np.arange(8) % 2), epochs=2,
        batch_size=4, callbacks=[ProgressBar(file=out)])
    lines = out.getvalue().splitlines()
    assert [line.split()[:2] for line in lines] == [["epoch", "1/2"], ["epoch", "2/2"]]


# ----------------------------------------------------------------------------- shadowing


def _run_beside_a_checkout(tmp_path, code):
    """Run ``code`` in a folder that holds a checkout named cnnlab, with the package found
    only by an import hook placed after Python's own path search (as an editable install
    places it), and nothing else on sys.path but NumPy's folder."""
    parent = tmp_path / "projects"
    checkout = parent / "cnnlab"
    (checkout / "cnnlab").mkdir(parents=True)
    (checkout / "cnnlab" / "__init__.py").write_text("")
    (checkout / "pyproject.toml").write_text('[project]\nname = "cnnlab"\n')
    site = str(Path(np.__file__).resolve().parent.parent)
    prelude = textwrap.dedent(f"""
        import sys
        from importlib.machinery import PathFinder
        sys.path.append({site!r})
        class EditableFinder:
            @classmethod
            def find_spec(cls, fullname, path=None, target=None):
                parent, _, _ = fullname.rpartition(".")
                if fullname == "cnnlab":
                    return PathFinder.find_spec(fullname, [{str(PACKAGE.parent)!r}])
                if parent == "cnnlab":
                    return PathFinder.find_spec(fullname, [{str(PACKAGE)!r}])
                return None
        sys.meta_path.append(EditableFinder)
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-S", "-c", prelude + textwrap.dedent(code)],
                          cwd=parent, env=env, capture_output=True, text=True, timeout=120)


def test_a_checkout_named_cnnlab_that_hides_the_package_is_named(tmp_path):
    result = _run_beside_a_checkout(tmp_path, """
        import cnnlab
        print("namespace:", getattr(cnnlab, "__file__", None))
        from cnnlab import nn
    """)
    assert "namespace: None" in result.stdout  # the folder, not the package, was imported
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    folder = tmp_path / "projects" / "cnnlab"
    assert last.startswith(f"ImportError: 'import cnnlab' found the folder {folder} (a "
                           f"checkout of cnnlab) instead of the cnnlab package (which is in "
                           f"{folder / 'cnnlab'})")
    assert "Run the script from another folder, or rename the folder" in last


def test_the_installed_package_beside_no_such_folder_imports_normally(tmp_path):
    result = _run_beside_a_checkout(tmp_path, """
        import os
        os.chdir("..")  # away from the checkout: sys.path[0] no longer holds it
        import sys
        sys.path.remove("") if "" in sys.path else None
        import cnnlab
        from cnnlab import nn
        print(type(nn.ReLU()).__name__)
    """)
    assert result.stdout.strip() == "ReLU", result.stderr


# ----------------------------------------------------------------------------- docs


def _error_classes():
    """Every exception class cnnlab defines for users (not private helpers)."""
    import importlib
    import inspect
    import pkgutil

    found = set()
    for info in pkgutil.walk_packages(cnnlab.__path__, "cnnlab."):
        if ".cli." in info.name or info.name.rsplit(".", 1)[-1].startswith("_"):
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # an optional dependency
            continue
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and \
                    obj.__module__.startswith("cnnlab") and not name.startswith("_"):
                found.add(name)
    return found


def test_every_error_class_is_on_the_errors_page():
    page = (PACKAGE.parent / "docs" / "errors.md").read_text()
    missing = sorted(name for name in _error_classes() if f"`{name}`" not in page and
                     f".{name}`" not in page)
    assert not missing, f"docs/errors.md does not list {missing}"
    readme = (PACKAGE.parent / "README.md").read_text()
    assert "docs/errors.md" in readme


def test_the_training_docs_give_the_image_folder_defaults():
    from cnnlab.train.recipes import FOLDER_RECIPE, FOLDER_TEST_FRACTION

    text = " ".join((PACKAGE.parent / "docs" / "training.md").read_text().split())
    expected = (f"Defaults for a folder of images (`--data PATH`): {FOLDER_RECIPE.epochs} "
                f"epochs, batch {FOLDER_RECIPE.batch_size}, Adam {FOLDER_RECIPE.lr:g}")
    assert expected.replace("0.002", "2e-3") in text
    assert f"{FOLDER_TEST_FRACTION:.0%} of each class held out as the test set" in text
