"""``cnnlab import``: an ONNX model (e.g. exported from PyTorch) as a cnnlab model file."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from cnnlab.cli.main import CLIError, UsageError
from cnnlab.cli.options import chw

EPILOG = """examples:
  cnnlab import resnet_block.onnx --out model.safetensors
  cnnlab import net.onnx --out model.safetensors --classes cat,dog --mean 0.5 --std 0.25
  cnnlab import net.onnx --out model.safetensors --input 3x64x64   (open spatial dims)

The model file then works with summary, predict, evaluate, inspect and
cnnlab.io.load_model (and
can be fine-tuned); running it needs only NumPy."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "import",
        help="turn an ONNX model (e.g. from PyTorch) into a cnnlab model file",
        description="Import an ONNX model as a cnnlab model: its layers become cnnlab "
                    "layers, its weights cnnlab parameters.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("onnx", metavar="MODEL.onnx", help="the ONNX file")
    p.add_argument("--out", metavar="FILE", required=True,
                   help="the cnnlab model file to write (.safetensors)")
    p.add_argument("--input", metavar="CxHxW", type=chw,
                   help="one sample's shape, when the file leaves it open")
    p.add_argument("--classes", metavar="NAMES",
                   help="class names, comma-separated, or @FILE with one name per line")
    p.add_argument("--mean", metavar="M[,M,M]",
                   help="input normalization mean per channel (with --std)")
    p.add_argument("--std", metavar="S[,S,S]", help="input normalization std per channel")
    p.set_defaults(func=run)


def _floats(text: str, option: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise UsageError(f"{option}: expected numbers separated by commas, got {text!r}"
                         ) from None


def _classes(text: str | None) -> list[str] | None:
    if text is None:
        return None
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise CLIError(f"--classes: no file at {path}")
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    else:
        names = [n.strip() for n in text.split(",")]
    if not names or not all(names):
        raise UsageError(f"--classes: expected names separated by commas, got {text!r}")
    return names


def run(args: argparse.Namespace) -> int:
    import cnnlab
    from cnnlab.onnx import ONNXError, load

    if not Path(args.onnx).is_file():
        raise CLIError(f"{args.onnx}: no such file")
    if (args.mean is None) != (args.std is None):
        raise UsageError("--mean and --std go together; give both or neither")
    try:
        model = load(args.onnx, input_shape=args.input)
    except ImportError as exc:
        raise CLIError(str(exc)) from None
    except ONNXError as exc:
        raise CLIError(str(exc)) from None
    meta = {}
    classes = _classes(args.classes)
    if classes is not None:
        meta["classes"] = classes
    if args.mean is not None:
        meta["normalization"] = {"mean": _floats(args.mean, "--mean"),
                                 "std": _floats(args.std, "--std")}
    try:
        path = cnnlab.io.save_model(model, args.out, meta=meta)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    kinds = Counter(type(m).__name__ for _, m in model.named_children())
    layers = ", ".join(f"{k} x{n}" if n > 1 else k for k, n in kinds.most_common())
    params = sum(p.numel() for p in model.parameters())
    dims = "x".join(map(str, model.spec["input_shape"]))
    print(f"imported {args.onnx}: {len(model)} nodes ({layers}), {params:,} parameters, "
          f"input {dims}")
    print(f"wrote {path}")
    return 0
