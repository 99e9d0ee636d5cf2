"""``cnnlab summary``: the per-layer table of an architecture string or a saved model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cnnlab.cli.main import CLIError

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
    p.add_argument("--input", metavar="CxHxW",
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


def load_model(target: str, input_shape: tuple[int, ...] | None):
    """A saved model when ``target`` is a file, else ``cnnlab.arch.build(target, shape)``."""
    if Path(target).exists():  # a model file, or a run folder holding model.safetensors
        import cnnlab

        return cnnlab.io.load_model(target)
    from cnnlab import arch

    if input_shape is None and target not in arch.PRESETS:
        raise CLIError(
            f"{target!r} is not a file, so it is read as an architecture string; give the "
            f"input shape with --input CxHxW (e.g. --input 3x32x32)"
        )
    return arch.build(target, input_shape)  # a preset knows its own input shape


def parse_input(text: str | None) -> tuple[int, ...] | None:
    from cnnlab.inspect._format import parse_shape

    if text is None:
        return None
    try:
        return parse_shape(text)
    except ValueError as exc:
        raise CLIError(f"--input: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from cnnlab.inspect.summary import summary

    shape = parse_input(args.input)
    model = load_model(args.model, shape)
    result = summary(model, shape)
    if args.json:
        print(json.dumps({"model": args.model, **result.to_dict()}, indent=2))
    else:
        print(result)
    return 0
