"""Training curves: loss and accuracy per epoch, for training and validation.

The history is what ``cnnlab train`` writes to ``RUN_DIR/history.json``: a list with one dict
per epoch holding ``epoch``, ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc`` and
``lr`` (validation values may be missing or null when a run has no validation set).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["load_history", "plot_history"]

# 1200 x 450 pixels: two panels side by side, readable in a README or a terminal viewer.
FIGSIZE = (12.0, 4.5)
DPI = 100


def _import_pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            "drawing training curves needs matplotlib; install it with "
            "pip install 'cnnlab[plot]'"
        ) from None
    matplotlib.use("Agg", force=True)  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def load_history(path: str | Path) -> list[dict]:
    """Read a ``history.json`` (a run directory or the file itself).

    Args:
        path: ``RUN_DIR`` or ``RUN_DIR/history.json``.

    Returns:
        The list of per-epoch dicts.

    Raises:
        FileNotFoundError: no history file there.
        ValueError: the file is not a list of per-epoch objects.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "history.json"
    if not path.exists():
        raise FileNotFoundError(
            f"no training history at {path}; `cnnlab train` writes RUN_DIR/history.json"
        )
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, Mapping):  # tolerate {"history": [...]}
        data = data.get("history", data.get("epochs"))
    return _check(data, str(path))


def _check(history, where: str) -> list[dict]:
    if not isinstance(history, Sequence) or isinstance(history, str | bytes) or not all(
        isinstance(e, Mapping) for e in history
    ):
        raise ValueError(f"{where}: expected a list of per-epoch objects (epoch, train_loss, ...)")
    if not history:
        raise ValueError(f"{where}: the history is empty; train for at least one epoch")
    return [dict(e) for e in history]


def _series(history: list[dict], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for i, e in enumerate(history):
        v = e.get(key)
        if v is None or not math.isfinite(float(v)):
            continue
        xs.append(float(e.get("epoch", i + 1)))
        ys.append(float(v))
    return xs, ys


def plot_history(history: Sequence[Mapping], path: str | Path, title: str | None = None) -> Path:
    """Draw loss and accuracy curves to a PNG.

    Args:
        history: one mapping per epoch with ``epoch``, ``train_loss``, ``train_acc`` and
            optionally ``val_loss``, ``val_acc`` (accuracies as fractions 0..1).
        path: the PNG to write (parent folders are created).
        title: a line above both panels (for example the run name).

    Returns:
        ``path`` as a Path. The image is 1200 x 450 pixels.

    Raises:
        ImportError: matplotlib is not installed.
        ValueError: the history is empty or not a list of mappings.
    """
    history = _check(history, "history")
    plt = _import_pyplot()
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=FIGSIZE, dpi=DPI)
    try:
        for ax, what, label in ((ax_loss, "loss", "loss"), (ax_acc, "acc", "accuracy")):
            for split, style in (("train", "-"), ("val", "--")):
                xs, ys = _series(history, f"{split}_{what}")
                if what == "acc":
                    ys = [100.0 * y for y in ys]
                if xs:
                    name = "training" if split == "train" else "validation"
                    ax.plot(xs, ys, style, marker="o", markersize=3, label=name)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 1.25
            ax.set_ylabel(label + (" (%)" if what == "acc" else ""))
            ax.set_title(label)
            ax.grid(True, alpha=0.3)
            if ax.lines:
                ax.legend()
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)
    return path
