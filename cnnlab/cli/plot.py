"""``cnnlab plot``: redraw a run's loss and accuracy curves from its history.json."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "plot",
        help="draw loss and accuracy curves of a training run",
        description="Read RUN_DIR/history.json (written by `cnnlab train`) and draw loss "
                    "and accuracy per epoch, training and validation, to a PNG.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run folder (or a history.json)")
    p.add_argument("--out", metavar="FILE.png",
                   help="where to write the picture (default RUN_DIR/curves.png)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cnnlab.inspect.curves import load_history, plot_history

    src = Path(args.run_dir)
    history = load_history(src)
    run_dir = src if src.is_dir() else src.parent
    out = Path(args.out) if args.out else run_dir / "curves.png"
    plot_history(history, out, title=run_dir.resolve().name)
    last = history[-1]
    parts = [f"{len(history)} epoch(s)"]
    for key in ("train_loss", "val_loss", "train_acc", "val_acc"):  # as training prints them
        if last.get(key) is not None:
            value = f"{last[key]:.2%}" if key.endswith("_acc") else f"{last[key]:.4f}"
            parts.append(f"{key} {value}")
    print(f"wrote {out} ({', '.join(parts)})")
    return 0
