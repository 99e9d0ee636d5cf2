"""Entry point of the ``cnnlab`` command: one subcommand per module in this package.

Exit codes: 0 success; 1 runtime error (one clear message on stderr, the traceback only
with ``--debug``): a missing or damaged file, data that does not fit, a model too large
for the machine, a NaN loss; 2 usage error: an unknown option, or an option value that is
wrong in itself or with the others (argparse's own checks, and :class:`UsageError`),
printed after the command's usage line. Text that comes from data is printed with control
characters escaped (:func:`cnnlab.cli.text.printable`).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from cnnlab.cli.text import printable

# Each module exposes ``register(subparsers)``, which adds its parser and sets ``func``
# (``import_`` adds the ``import`` command: ``import`` cannot name a module).
COMMANDS = ["train", "evaluate", "predict", "summary", "explain", "inspect", "plot", "export",
            "import_", "features", "similar"]


class CLIError(Exception):
    """An error the user can fix; printed as a message without a traceback, exit code 1."""


class UsageError(CLIError):
    """A bad option value the parser cannot see by itself (an architecture string that does
    not parse, a window larger than the input): printed after the command's usage line,
    exit code 2, as argparse does for the values it checks."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnlab",
        description="Convolutional neural networks from first principles, on NumPy.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"cnnlab.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"cnnlab.cli.{name}":
                raise
            continue
        module.register(sub)
    # Every command also takes --debug after its name (SUPPRESS: the top-level value stands
    # unless it is given there).
    for command in sub.choices.values():
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show full tracebacks on errors")
    _remember_parsers(parser)
    return parser


def _remember_parsers(parser: argparse.ArgumentParser) -> None:
    """Each (sub)command's parser records itself, so a UsageError prints its usage line."""
    parser.set_defaults(usage_parser=parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _remember_parsers(child)


def main(argv: list[str] | None = None) -> int:
    # Under mpirun every rank runs this; only rank 0 prints (see cnnlab.cli.distributed).
    from cnnlab.cli.distributed import parse_on_every_rank, rank_zero_output, report_failure
    from cnnlab.kernels.memory import keep_freed_memory

    with rank_zero_output():
        parser = build_parser()
        args = parse_on_every_rank(parser, argv)
        keep_freed_memory()  # a command owns its process: reuse each step's memory
        try:
            return int(args.func(args) or 0)
        except KeyboardInterrupt:
            return report_failure("cnnlab: interrupted", 130)
        except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
            sys.stderr.close()
            return 0
        except UsageError as exc:
            if args.debug:
                raise
            usage = getattr(args, "usage_parser", parser)
            return report_failure(f"{usage.format_usage()}{usage.prog}: error: "
                                  f"{printable(exc, multiline=True)}", 2)
        except Exception as exc:  # one clear line unless --debug
            if args.debug:
                raise
            return report_failure(f"cnnlab: error: {printable(exc, multiline=True)}", 1)


if __name__ == "__main__":
    # Run the module's imported copy: the commands raise *its* CLIError and UsageError.
    from cnnlab.cli.main import main as _main

    sys.exit(_main())
