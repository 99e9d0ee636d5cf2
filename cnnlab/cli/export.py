"""``cnnlab export``: a model as an ONNX file that runs at any batch size."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cnnlab.cli.main import CLIError, UsageError
from cnnlab.cli.options import chw

EPILOG = """examples:
  cnnlab export runs/mnist/model.safetensors --format onnx --out mnist.onnx
  cnnlab export lenet5 --out lenet5.onnx          (a preset, untrained)
  cnnlab export conv3x3x8-relu-pool2-fc10 --input 1x8x8 --out tiny.onnx

The file keeps the batch dimension free, holds the class names, input normalization and
input shape in its metadata, and is checked with onnx.checker; when onnxruntime is
installed, its outputs are compared with cnnlab's at batch sizes 1 and 3."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="write a model as an ONNX file (onnxruntime, TensorRT, browsers, ...)",
        description="Write a saved model (or an architecture, untrained) as an ONNX file.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL",
                   help="a model file, a `cnnlab train` --out folder, a preset or an "
                        "architecture string")
    p.add_argument("--format", choices=("onnx",), default="onnx",
                   help="the file format (default onnx)")
    p.add_argument("--out", metavar="FILE", required=True, help="the file to write")
    p.add_argument("--input", metavar="CxHxW", type=chw,
                   help="one sample's shape, for an architecture string")
    p.add_argument("--opset", type=int, default=17, metavar="N",
                   help="ONNX opset, 13 to 21 (default 17)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from cnnlab.onnx import ONNXError, export

    model = _model(args.model, args.input)
    shape = tuple((getattr(model, "spec", None) or {}).get("input_shape") or ())
    if not shape:
        raise UsageError(f"{args.model} does not record its input shape; pass --input CxHxW")
    sample = np.zeros((1, *shape), dtype=np.float32)
    try:
        info = export(model, sample, args.out, opset=args.opset)
    except ImportError as exc:
        raise CLIError(str(exc)) from None
    except ONNXError as exc:
        raise CLIError(str(exc)) from None
    dims = "x".join(map(str, shape))
    print(f"wrote {info['path']} ({info['nodes']} nodes, opset {info['opset']}, input "
          f"Nx{dims} for any batch size N, {info['seconds']:.2f} s)")
    error = _compare(model, info["path"], shape)
    if error is not None:
        print(f"checked with onnxruntime: outputs equal cnnlab's at batch sizes 1 and 3 "
              f"(largest relative error {error:.1e})")
    else:
        print("note: onnxruntime is not installed, so the outputs were not compared "
              '(pip install "cnnlab[onnx]")', file=sys.stderr)
    return 0


def _model(target: str, shape: tuple[int, ...] | None):
    """A saved model (a file or a run folder), else a preset or architecture, untrained."""
    import cnnlab
    from cnnlab import arch

    if Path(target).exists():
        return cnnlab.io.load_model(target)
    if shape is None and target not in arch.PRESETS:
        raise UsageError(f"{target!r} is not a file, so it is read as an architecture string; "
                         "give the input shape with --input CxHxW (e.g. --input 3x32x32)")
    try:
        return arch.build(target, shape)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _compare(model, path: str | Path, shape: tuple[int, ...]) -> float | None:
    """The largest relative difference between onnxruntime's outputs and cnnlab's on random
    inputs at batch sizes 1 and 3 (None without onnxruntime)."""
    import numpy as np

    import cnnlab

    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    rng = np.random.default_rng(0)
    worst = 0.0
    model.eval()
    for batch in (1, 3):
        x = rng.random((batch, *shape), dtype=np.float32)
        with cnnlab.no_grad():
            ours = model(cnnlab.Tensor(x))
        ours = (ours[0] if isinstance(ours, tuple) else ours).data
        theirs = session.run(None, {name: x})[0]
        scale = float(np.abs(ours).max()) or 1.0
        worst = max(worst, float(np.abs(ours - theirs).max()) / scale)
    if worst > 1e-4:
        raise CLIError(f"onnxruntime's outputs differ from cnnlab's by {worst:.2g} (relative); "
                       "the export is wrong, please report it")
    return worst
