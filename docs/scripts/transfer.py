"""Fashion-MNIST from few labels: trained from scratch, or started from an MNIST model.

For each number of labelled training images (``--limit``) and each seed, five runs of
``cnnlab train --data fashion-mnist``: from scratch; ``--init-from`` the MNIST model with
``--freeze -1`` (only the new classifier trains); with ``--freeze 8`` (the convolution and
pooling layers stay, the two fully-connected layers train); without freezing (every layer
fine-tuned) at the recipe's learning rate; and fine-tuned at a tenth of it with the new
classifier at the full rate (``--lr 2e-4 --lr-head 2e-3``). Each run's test accuracy
comes from its model file. Runs already done are read again, not repeated. Prints a
Markdown table (mean ± sample standard deviation over the seeds), writes the numbers as
JSON and draws the plot.

    python docs/scripts/transfer.py --source runs/mnist \
        --data-dir /usr/share/datasets/fashion-mnist --runs runs/transfer \
        --json docs/scripts/transfer.json --plot docs/images/transfer.png
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# Method -> (folder number, extra arguments); None: trained from scratch.
METHODS = {
    "from scratch": (0, None),
    "from MNIST, all but the classifier frozen (--freeze -1)": (1, ["--freeze", "-1"]),
    "from MNIST, conv layers frozen (--freeze 8)": (3, ["--freeze", "8"]),
    "from MNIST, fine-tuned": (2, []),
    "from MNIST, fine-tuned at lr 2e-4, classifier at 2e-3": (4, ["--lr", "2e-4",
                                                                   "--lr-head", "2e-3"]),
}
# Enough steps for the smallest sets to converge: 90 training images are 2 batches an epoch.
EPOCHS = {100: 40, 1000: 15, 10000: 5}


def command(method: str, source: str, limit: int, seed: int, data_dir: str, out: Path):
    args = [sys.executable, "-m", "cnnlab", "train", "--data", "fashion-mnist", "--data-dir",
            data_dir, "--limit", str(limit), "--seed", str(seed), "--epochs",
            str(EPOCHS[limit]), "--out", str(out), "--no-plot"]
    extra = METHODS[method][1]
    if extra is not None:
        args += ["--init-from", source, *extra]
    return args


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", required=True, help="the MNIST model (file or run folder)")
    p.add_argument("--data-dir", required=True, help="folder of the Fashion-MNIST IDX files")
    p.add_argument("--runs", default="runs/transfer", help="folder for the runs")
    p.add_argument("--sizes", type=int, nargs="*", default=[100, 1000, 10000])
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    p.add_argument("--json", help="JSON file for the results")
    p.add_argument("--plot", help="PNG file for the plot")
    args = p.parse_args()

    runs = Path(args.runs)
    results = []
    for limit in args.sizes:
        for seed in args.seeds:
            for method, (k, _) in METHODS.items():
                out = runs / f"{limit}-{k}-seed{seed}"
                if not (out / "model.safetensors").is_file():
                    cmd = command(method, args.source, limit, seed, args.data_dir, out)
                    print("$", " ".join(cmd[2:]), flush=True)
                    start = time.perf_counter()
                    proc = subprocess.run(cmd, capture_output=True, text=True,
                                          env=dict(os.environ, PYTHONUNBUFFERED="1"))
                    if proc.returncode != 0:
                        sys.exit(f"run failed:\n{proc.stdout}\n{proc.stderr}")
                    print(f"  {time.perf_counter() - start:.0f} s", flush=True)
                acc = test_accuracy(out)
                results.append({"limit": limit, "seed": seed, "method": method,
                                "accuracy": acc})
                print(f"{limit:>6} seed {seed}  {method:50s} {acc:.2%}", flush=True)
    summary = summarize(results)
    print()
    print(table(summary, args.sizes))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"epochs": EPOCHS, "runs": results, "summary": summary}, f, indent=1)
    if args.plot:
        plot(summary, args.sizes, args.plot)


def test_accuracy(run: Path) -> float:
    import cnnlab

    return float(cnnlab.io.read_spec(run / "model.safetensors")["training"]["test"]["accuracy"])


def summarize(results: list[dict]) -> list[dict]:
    out = []
    for method in METHODS:
        for limit in sorted({r["limit"] for r in results}):
            accs = [r["accuracy"] for r in results if r["method"] == method and
                    r["limit"] == limit]
            out.append({"method": method, "limit": limit, "n": len(accs),
                        "mean": float(np.mean(accs)),
                        "std": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0})
    return out


def table(summary: list[dict], sizes: list[int]) -> str:
    cell = {(s["method"], s["limit"]): s for s in summary}
    lines = ["| | " + " | ".join(f"{n:,} labelled images" for n in sizes) + " |",
             "|---|" + "---:|" * len(sizes)]
    for method in METHODS:
        cells = [f"{100 * cell[(method, n)]['mean']:.2f} ± {100 * cell[(method, n)]['std']:.2f}%"
                 for n in sizes]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(summary: list[dict], sizes: list[int], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for method, marker in zip(METHODS, "osd^v", strict=True):
        rows = [s for s in summary if s["method"] == method]
        ax.errorbar([s["limit"] for s in rows], [100 * s["mean"] for s in rows],
                    yerr=[100 * s["std"] for s in rows], marker=marker, capsize=4,
                    label=method)
    ax.set_xscale("log")
    ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
    ax.set_xlabel("labelled Fashion-MNIST training images")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Fashion-MNIST: from scratch or from an MNIST model\n"
                 "(mean and standard deviation over 3 seeds)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
