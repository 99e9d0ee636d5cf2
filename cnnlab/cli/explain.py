"""``cnnlab explain conv|pool``: one convolution or pooling written out number by number."""

from __future__ import annotations

import argparse
import json

import numpy as np

from cnnlab.cli.main import CLIError, UsageError
from cnnlab.cli.options import chw, non_negative_int, position
from cnnlab.cli.train import positive_int

EPILOG_CONV = """examples:
  cnnlab explain conv --input 3x7x7 --filters 2 --size 3 --stride 2 --padding 1
  cnnlab explain conv --at 1,0,2 --seed 3
  cnnlab explain conv --values values.json --all
  cnnlab explain conv --html conv.html     (open the page in a browser)

--values: a .npy array is the input (CxHxW or HxW); a .json or .npz may hold
"input", "weight" (FxCxKxK) and "bias" (F); what it lacks is drawn at random."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "explain",
        help="a convolution or pooling written out number by number",
        description="Show how a convolution or pooling computes every number.",
    )
    sub = p.add_subparsers(dest="op", metavar="OP")
    sub.required = True

    c = sub.add_parser(
        "conv",
        help="a convolution: padded input, filters, output-size formula, inner products",
        description="Print the zero-padded input, the filters, the output-size formula with "
                    "the numbers put in, the inner product for one output position (or all) "
                    "and the output maps. The numbers are cnnlab's conv2d.",
        epilog=EPILOG_CONV,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("--input", metavar="CxHxW", type=chw, default="3x5x5",
                   help="input volume, channels x height x width (default 3x5x5)")
    c.add_argument("--filters", type=positive_int, default=2, metavar="F",
                   help="number of filters (default 2)")
    c.add_argument("--size", type=positive_int, default=3, metavar="K",
                   help="filter size (default 3)")
    _common(c, stride=2, padding=1, at="F,ROW,COL")
    c.add_argument("--html", metavar="FILE",
                   help="also write a page that animates the convolution (opens offline)")
    c.set_defaults(func=run_conv)

    q = sub.add_parser(
        "pool",
        help="max or average pooling: padded input, windows, output",
        description="Print the padded input, the output-size formula, the window and its "
                    "max or average for one output position (or all) and the output. The "
                    "numbers are cnnlab's max_pool2d / avg_pool2d.",
        epilog="examples:\n  cnnlab explain pool --input 1x4x4 --size 2\n"
               "  cnnlab explain pool --mode avg --size 3 --stride 1 --padding 1 --all",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    q.add_argument("--input", metavar="CxHxW", type=chw, default="1x4x4",
                   help="input volume, channels x height x width (default 1x4x4)")
    q.add_argument("--size", type=positive_int, default=2, metavar="K",
                   help="window size (default 2)")
    q.add_argument("--mode", choices=("max", "avg"), default="max",
                   help="max or average pooling (default max)")
    _common(q, stride=None, padding=0, at="C,ROW,COL")
    q.set_defaults(func=run_pool)


def _common(p, stride, padding, at) -> None:
    p.add_argument("--stride", type=positive_int, default=stride, metavar="S",
                   help=f"step between windows (default {stride or 'the window size'})")
    p.add_argument("--padding", type=non_negative_int, default=padding, metavar="P",
                   help=f"padding on each side (default {padding})")
    p.add_argument("--seed", type=non_negative_int, default=0, metavar="N",
                   help="seed of the random values (default 0)")
    p.add_argument("--float", action="store_true",
                   help="random real values with two decimals instead of small integers")
    p.add_argument("--values", metavar="FILE", help="read the values from .npy, .npz or .json")
    p.add_argument("--at", metavar=at, type=position, default="0,0,0",
                   help=f"the output position to explain, {at} counted from 0 (default 0,0,0)")
    p.add_argument("--all", action="store_true", help="explain every output position")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")


def _values(args) -> dict[str, np.ndarray]:
    from cnnlab.inspect.explain import load_values

    if args.values is None:
        return {}
    try:
        return load_values(args.values)
    except FileNotFoundError:
        raise CLIError(f"--values: no file at {args.values}") from None


def _explained(args, make):
    """Run an explanation; a value that does not fit (a window larger than the input, a
    position outside the output) is a usage error, unless it came from a --values file."""
    try:
        return make()
    except ValueError as exc:
        raise (CLIError if args.values else UsageError)(str(exc)) from None


def run_conv(args: argparse.Namespace) -> int:
    from cnnlab.inspect.explain import explain_conv, random_values

    given = _values(args)
    shape = tuple(given["input"].shape) if "input" in given else args.input
    filters, size = args.filters, args.size
    if "weight" in given:
        filters, size = int(given["weight"].shape[0]), int(given["weight"].shape[-1])
    if filters < 1 or size < 1:
        raise CLIError(f"--values: expected at least one filter of size >= 1, got {filters} "
                       f"of size {size}")
    values = {**random_values(shape, filters, size, args.seed, integers=not args.float),
              **given}
    if "weight" in given and "bias" not in given:
        values["bias"] = np.zeros(filters, dtype=np.float32)

    def make():
        e = explain_conv(values["input"], values["weight"], values["bias"], args.stride,
                         args.padding)
        e.check_position(*args.at)
        return e

    e = _explained(args, make)
    if args.html:
        from cnnlab.inspect.page import write_explain_page

        path = write_explain_page(e, args.html, args.at)
    if args.json:
        print(json.dumps(e.to_dict(args.at, all_cells=args.all), allow_nan=False))
    elif args.html:  # the page is the explanation: the text would only repeat it
        print(f"wrote {path} (open it in a browser)")
    else:
        print(e.render(args.at, all_cells=args.all))
    return 0


def run_pool(args: argparse.Namespace) -> int:
    from cnnlab.inspect.explain import explain_pool

    given = _values(args)
    if set(given) - {"input"}:
        raise CLIError("--values: pooling has no weight or bias; give only 'input'")
    if "input" in given:
        x = given["input"]
    else:
        rng = np.random.default_rng(args.seed)
        x = (np.round(rng.uniform(0, 1, args.input), 2) if args.float
             else rng.integers(0, 10, args.input)).astype(np.float32)

    def make():
        e = explain_pool(x, args.size, args.stride, args.padding, args.mode)
        e.check_position(*args.at)
        return e

    e = _explained(args, make)
    if args.json:
        print(json.dumps(e.to_dict(args.at, all_cells=args.all), allow_nan=False))
    else:
        print(e.render(args.at, all_cells=args.all))
    return 0
