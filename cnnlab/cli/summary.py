"""``cnnlab summary``: the per-layer table of an architecture string or a saved model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cnnlab.cli.main import UsageError
from cnnlab.cli.options import chw

HELP = "per-layer shapes, parameters, multiply-adds and receptive fields"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "summary",
        help=HELP,
        description=(
            "Print a table with one row per layer: output shape, weights, biases, "
            "parameters, multiply-adds and receptive field; totals; what a fully-connected "
            "layer would need in place of each conv layer; and a warning wherever a "
            "window does not tile its input exactly."
        ),
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="ARCH|MODEL",
                   help="an architecture string or preset, or a saved model file")
    p.add_argument("--input", metavar="CxHxW", type=chw,
                   help="one sample's shape; required for an architecture string, defaults to a "
                        "preset's or saved model's own")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def _epilog() -> str:
    from cnnlab import arch

    lines = ["examples:", "  cnnlab summary conv5x5x10 --input 3x32x32",
             "  cnnlab summary lenet5", "  cnnlab summary runs/mnist/model.safetensors --json",
             "", "presets (input shape, architecture):"]
    for name, text in arch.PRESETS.items():
        shape = "x".join(map(str, arch.PRESET_INPUT_SHAPES.get(name, ())))
        lines.append(f"  {name:<12} {shape:<8} {text}")
        if name in arch.PRESET_NOTES:
            lines.append(f"  {'':<12} {'':<8} {arch.PRESET_NOTES[name]}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Summarize a saved model, or an architecture string from shape arithmetic alone
    (nothing is built, so a model too large for this machine can still be summarized)."""
    from cnnlab import arch
    from cnnlab.inspect.summary import summary

    target, shape = args.model, args.input
    if Path(target).exists():  # a model file, or a run folder holding model.safetensors
        import cnnlab

        model = cnnlab.io.load_model(target)
        try:
            result = summary(model, shape)
        except ValueError as exc:  # --input does not fit the saved model
            raise UsageError(f"--input: {exc}") from None
    else:
        if shape is None and arch.resolve(target) == target.strip():
            raise UsageError(
                f"{target!r} is not a file, so it is read as an architecture string; give the "
                f"input shape with --input CxHxW (e.g. --input 3x32x32)"
            )
        try:
            result = summary(target, shape)  # a preset knows its own input shape
        except ValueError as exc:  # a bad token, or a layer the input cannot pass
            raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps({"model": args.model, **result.to_dict()}, indent=2, allow_nan=False))
    else:
        print(result)
    return 0
