"""``cnnlab train``: train a network on a dataset, keep every epoch, report test accuracy.

With no arguments it trains the default network on the digits that ship with cnnlab.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.cli.main import CLIError, UsageError
from cnnlab.cli.options import non_negative_int
from cnnlab.cli.text import printable

MODEL_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.safetensors"
HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
CURVES_FILE = "curves.png"

# Settings that shape the run; a resumed run must keep them, or it would not end with the
# weights an uninterrupted run has.
FIXED_ON_RESUME = ("task", "data", "arch", "batch_size", "lr", "optimizer", "weight_decay",
                   "schedule", "augment", "val_split", "seed", "limit", "patience",
                   "init_from", "freeze", "lr_head", "sync_bn")


def register(subparsers: Any) -> None:
    """Add the ``train`` command."""
    from cnnlab import tasks
    from cnnlab.train.recipes import DATASETS

    p = subparsers.add_parser(
        "train",
        help="train a network (default: the built-in digits)",
        description=(
            "Train a convolutional network and report its accuracy on the test set. With no "
            "arguments: the default network on the 8x8 digits that ship with cnnlab (well "
            "under a minute). Every epoch is checkpointed; Ctrl-C saves and stops, and "
            "--resume DIR continues exactly where the run stopped."
        ),
        epilog=(
            "files in --out: model.safetensors (the trained model, for evaluate/predict), "
            "checkpoint.safetensors (for --resume), history.json and history.csv (loss, "
            "accuracy and lr per epoch), curves.png (if matplotlib is installed)."
        ),
    )
    p.add_argument("--task", default=None, choices=tasks.available(),
                   help="what to train the network for (default classify): "
                        + "; ".join(f"{n}: {tasks.get(n).help}" for n in tasks.available()))
    p.add_argument("--data", metavar="NAME|PATH",
                   help=f"{', '.join(DATASETS)} (default: the task's, digits for classify), "
                        "or a folder of images PATH/<class>/<image> (or PATH/train/... and "
                        "PATH/test/...)")
    p.add_argument("--data-dir", metavar="DIR",
                   help="where the dataset files are (default $CNNLAB_DATA or ~/.cache/cnnlab)")
    p.add_argument("--download", action="store_true",
                   help="download the dataset if its files are missing")
    p.add_argument("--arch", metavar="STRING|PRESET",
                   help="architecture string such as conv3x3x16p1-relu-pool2-fc10, or a preset "
                        "name (see `cnnlab summary --help`); default: the dataset's preset")
    p.add_argument("--epochs", type=positive_int, metavar="N",
                   help="passes over the training set (default: the data's recipe, "
                        f"{_recipe_defaults('epochs')})")
    p.add_argument("--batch-size", type=positive_int, metavar="N",
                   help="images per training step (default: the data's recipe, "
                        f"{_recipe_defaults('batch_size')})")
    p.add_argument("--lr", type=_positive_float, metavar="X",
                   help=f"learning rate (default: the data's recipe, {_recipe_defaults('lr')})")
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw"],
                   help="sgd (momentum 0.9, Nesterov), adam or adamw (default: the data's "
                        f"recipe, {_recipe_defaults('optimizer')})")
    p.add_argument("--weight-decay", type=_non_negative_float, metavar="X",
                   help="L2 penalty on the weights, decoupled from the gradient for adamw "
                        f"(default: the data's recipe, {_recipe_defaults('weight_decay')}; "
                        "with an --optimizer other than the recipe's: 0.01 for adamw, else 0)")
    p.add_argument("--schedule", choices=["cosine", "step", "constant"],
                   help="learning-rate schedule: cosine to zero (default), x0.1 every third "
                        "of the run, or constant")
    p.add_argument("--augment", choices=["none", "crop", "crop-flip"],
                   help="random shifts (crop) and mirror images (flip) of training batches")
    p.add_argument("--val-split", type=_fraction, metavar="F",
                   help="share of the training set held out for validation (default 0.1)")
    p.add_argument("--patience", type=positive_int, metavar="N",
                   help="stop early after N epochs without a lower validation loss")
    p.add_argument("--limit", type=positive_int, metavar="N",
                   help="train on a random subset of N training images (quick trials)")
    p.add_argument("--seed", type=non_negative_int, metavar="N",
                   help="random seed, a whole number >= 0 (default 0)")
    p.add_argument("--sync-bn", action="store_true", default=None,
                   help="on several ranks (mpirun -np N): batch norm over the whole batch "
                        "instead of each rank's share (see docs/distributed.md)")
    p.add_argument("--no-plot", action="store_true",
                   help="don't draw curves.png (drawing needs matplotlib and a second or two)")
    p.add_argument("--out", metavar="DIR",
                   help="output folder (default runs/<data>-<date>-<time>); one training "
                        "at a time may write to it")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run in an --out folder that holds one, replacing its "
                        "model, checkpoint and history")
    p.add_argument("--resume", metavar="DIR",
                   help="continue the run saved in DIR (its settings are reused; --epochs "
                        "may raise the total)")
    p.add_argument("--init-from", metavar="MODEL",
                   help="start from a trained model's weights: layers with the same name and "
                        "shape are copied, the classifier head is new when the classes differ "
                        "(default --arch: that model's)")
    p.add_argument("--freeze", type=_freeze, metavar="N|LAYER",
                   help="keep the first N layers fixed (negative: all but the last -N, so -1 "
                        "trains only the classifier), or every layer up to and including "
                        "LAYER; frozen batch norm uses its running statistics")
    p.add_argument("--lr-head", type=_positive_float, metavar="X",
                   help="learning rate of the classifier (the last fc layer) when it should "
                        "differ from --lr, e.g. when fine-tuning")
    for name in tasks.available():
        tasks.get(name).add_arguments("train", p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train as ``args`` says; 0 on success, 130 when stopped by Ctrl-C (checkpoint saved)."""
    from cnnlab.cli.distributed import Ranks

    ranks = Ranks()  # with mpirun -np N: this process's place among the N
    config, out, resume = _config(args, ranks)
    out = ranks.same_folder(out)
    with ranks.main_holds(_hold, out):  # rank 0 writes the run folder
        ranks.main_does(_claim, out, resume, args.overwrite)
        return _train(args, config, out, resume, ranks)


def _train(args: argparse.Namespace, config: dict[str, Any], out: Path,
           resume: dict | None, ranks) -> int:
    import cnnlab
    from cnnlab import tasks
    from cnnlab import train as T

    batch_here = ranks.batch_per_rank(config["batch_size"])
    task = tasks.get(config["task"])
    data = _prepare(task, config)
    model, optimizer, scheduler = _build(task, config, data, resuming=resume is not None)
    shuffle = np.random.default_rng([config["seed"], 1])
    net = ranks.wrap(model, config, shuffle)
    val_here = ranks.share(data.val, "validation")
    _print_plan(config, data, model, out, resume, ranks)

    checkpoint = T.Checkpoint(out / CHECKPOINT_FILE, meta={"config": config})
    early = T.EarlyStopping(patience=config["patience"]) if config["patience"] else None
    callbacks = ranks.callbacks(val_here) + ([  # rank 0 shows and writes the run
        # Under mpirun a rank's output looks like a terminal even when it goes to a file.
        T.ProgressBar(tty=False if ranks.many else None),
        T.HistoryFile(out / HISTORY_JSON, out / HISTORY_CSV),
        checkpoint,
    ] if ranks.is_main else []) + ([early] if early else [])
    if ranks.is_main:
        out.mkdir(parents=True, exist_ok=True)
    try:
        state = T.fit(net, optimizer, data.train, val_data=val_here,
                      epochs=config["epochs"], batch_size=batch_here,
                      scheduler=scheduler, callbacks=callbacks, generator=shuffle,
                      transform=data.train_transform, resume=resume, loss_fn=task.loss,
                      metric_fn=task.train_metric, forward_fn=task.forward,
                      sampler=ranks.sampler(data.train, config["seed"]))
    except cnnlab.NonFiniteLossError as exc:
        raise CLIError(f"{exc}; {_last_good(checkpoint)}; try a lower --lr") from exc

    if state.stop_reason == "interrupted":
        where = (f"epoch {state.epoch + 1}, batch {state.batch}/{state.num_batches}"
                 if state.batch else f"the end of epoch {state.epoch}")
        print(f"\ninterrupted at {where}; checkpoint saved to {checkpoint.path}\n"
              f"continue with: cnnlab train --resume {out}", file=sys.stderr)
        return 130
    if early is not None and state.stop_reason == "early_stopping":
        print(early.message)

    # The test set is used here, once, for the final number.
    info = {"data": config["name"], "data_arg": config["data"],
            "data_dir": config["data_dir"], "epochs": state.epoch,
            **{k: config[k] for k in ("init_from", "freeze") if config.get(k) is not None}}
    if data.test is not None:
        result = ranks.evaluate(task, model, data.test)  # each rank a share, when it can
        if ranks.is_main:
            print(task.headline(result))
            info["test"] = _plain_numbers(result)
    if not ranks.is_main:
        return 0
    # `info` tells evaluate where the data was, so it can find the same test set again.
    cnnlab.io.save_model(model, out / MODEL_FILE, meta={"training": info})
    if not args.no_plot:
        _plot(state.history, out / CURVES_FILE)
    print(f"saved model to {out / MODEL_FILE}")
    print(f"  (also in {out}: {_listing(out)})")
    return 0


def _plain_numbers(result: dict[str, Any]) -> dict[str, Any]:
    """The scalar metrics of an evaluation (no matrices), for the model file."""
    return {k: v for k, v in result.items()
            if isinstance(v, (int, float, str)) and not isinstance(v, bool)}


def _prepare(task, config: dict[str, Any]):
    """The task's data, its errors turned into messages for the terminal."""
    from cnnlab.data import DataFormatError, DownloadError

    try:
        data = task.prepare(config)
    except (FileNotFoundError, DataFormatError, DownloadError, ValueError) as exc:
        raise CLIError(str(exc).strip() or type(exc).__name__) from exc
    for note in data.notes:
        print(f"note: {printable(note)}", file=sys.stderr)
    return data


def _build(task, config: dict[str, Any], data, resuming: bool = False):
    """Model (seeded; started from --init-from, frozen as --freeze says), optimizer and
    learning-rate schedule."""
    import cnnlab
    from cnnlab.budget import TooLargeError
    from cnnlab.train import transfer

    cnnlab.manual_seed(config["seed"])
    try:
        model = task.build(config["arch"], data)
        if model.spec.get("arch"):  # a training step: parameters x4, the batch's activations
            cnnlab.arch.check_memory(model.spec["arch"], data.input_shape,
                                     batch_size=config["batch_size"], training=True)
    except TooLargeError as exc:
        raise CLIError(str(exc)) from None
    except ValueError as exc:  # the message names the token and draws a caret under it
        if config["arch"] is None:
            raise CLIError(f"the default network does not fit this data: {exc}") from None
        raise UsageError(f"--arch: {exc}") from None
    model.spec.update(data.spec)
    model.spec.update(task=task.name, input_shape=list(data.input_shape))
    _transfer(model, config, resuming)
    optimizer = _optimizer(config, transfer.param_groups(model, config.get("lr_head")))
    return model, optimizer, _scheduler(config, optimizer)


def _transfer(model, config: dict[str, Any], resuming: bool) -> None:
    """--init-from (not when resuming: the checkpoint holds the weights) and --freeze,
    reported on stderr."""
    from cnnlab.train import transfer

    def say(line: str) -> None:
        print(printable(line), file=sys.stderr)

    if config.get("init_from") and not resuming:
        try:
            transfer.initialize(model, config["init_from"], say)
        except ValueError as exc:
            raise CLIError(f"--init-from: {exc}") from None
    if config.get("freeze") is not None:
        try:
            transfer.freeze(model, config["freeze"], say)
        except ValueError as exc:  # a layer the network does not have: a bad option value
            raise UsageError(f"--freeze {printable(config['freeze'])}: "
                             f"{str(exc).removeprefix('freeze: ')}") from None
        if not config.get("init_from"):
            say("note: without --init-from the frozen layers keep their random initial weights")


def _print_plan(config: dict[str, Any], data, model, out: Path, resume: dict | None,
                ranks) -> None:
    c, h, w = data.input_shape
    n_params = sum(int(p.data.size) for p in model.parameters())
    test = f"{len(data.test):,} test" if data.test is not None else "no test"
    n_val = 0 if data.val is None else len(data.val[1] if isinstance(data.val, tuple)
                                           else data.val)
    print(f"data: {data.name}, {len(data.train):,} training, {n_val:,} validation, {test} "
          f"images ({c}x{h}x{w}, {len(data.classes)} classes)")
    what = model.spec.get("arch") or model.spec["model"]["name"]
    task = "" if config["task"] == "classify" else f", task {config['task']}"
    print(f"model: {what} ({n_params:,} parameters{task})")
    print(f"training: {config['epochs']} epochs, {ranks.describe(config['batch_size'])}, "
          f"{config['optimizer']} lr {config['lr']:g}, {config['schedule']} schedule, "
          f"seed {config['seed']} -> {out}")
    if resume is not None:
        done, batch = resume["epoch"], resume["extra"]["batch"]
        where = f"epoch {done + 1}, batch {batch}" if batch else f"the end of epoch {done}"
        print(f"resuming from {resume['path']} at {where}")
        if done >= config["epochs"] and not batch:
            print(f"note: the run has already trained {done} epochs; pass --epochs N (more "
                  f"than {done}) to train further", file=sys.stderr)


# ------------------------------------------------------------------------ configuration


def _config(args: argparse.Namespace, ranks) -> tuple[dict[str, Any], Path, dict | None]:
    """Settings of the run: defaults of the dataset's recipe, then the options given; for
    --resume the settings saved in the checkpoint (returned too)."""
    from cnnlab import tasks
    from cnnlab.train.checkpoint import read_checkpoint
    from cnnlab.train.recipes import DATASETS, data_name

    given = {k: getattr(args, k) for k in ("task", "data", "arch", "epochs", "batch_size",
                                           "lr", "optimizer", "weight_decay", "schedule",
                                           "augment", "val_split", "patience", "limit",
                                           "seed", "init_from", "freeze", "lr_head",
                                           "sync_bn")}
    if given["init_from"] is not None:
        given["init_from"] = _source_model(given["init_from"])
    if given["data"] not in (None, *DATASETS) and Path(given["data"]).expanduser().is_dir():
        # Absolute, so that evaluate and --resume find the folder from anywhere.
        given["data"] = str(Path(given["data"]).expanduser().resolve())
    data_dir = None if args.data_dir is None else str(Path(args.data_dir).expanduser().resolve())
    if args.resume is not None:
        run_dir = Path(args.resume)
        path = run_dir if run_dir.is_file() else run_dir / CHECKPOINT_FILE
        if not path.is_file():
            raise CLIError(f"--resume {args.resume}: no {CHECKPOINT_FILE} there; give the --out "
                           "folder of the run to continue")
        try:
            ckpt = read_checkpoint(path)
        except ValueError as exc:
            raise CLIError(f"--resume {args.resume}: {str(exc).splitlines()[0]}") from None
        if "config" not in ckpt["extra"].get("meta", {}):
            raise CLIError(f"--resume {args.resume}: {path} was not written by `cnnlab train`; "
                           "resume it from Python with cnnlab.train.fit(..., resume=path)")
        config = dict(ckpt["extra"]["meta"]["config"])
        config.setdefault("task", "classify")
        config.setdefault("sync_bn", False)  # runs saved before the option existed
        ranks.check_resume(ckpt, args.resume)
        ckpt["path"] = path
        for key in FIXED_ON_RESUME:
            if given[key] is not None and given[key] != config.get(key):
                raise CLIError(
                    f"--{key.replace('_', '-')} {given[key]} differs from the run being resumed "
                    f"({config.get(key)}); drop it: a resumed run keeps its settings"
                )
        if args.out is not None and Path(args.out).resolve() != path.parent.resolve():
            raise CLIError("--out cannot change when resuming: the run continues in "
                           f"{path.parent}")
        if given["epochs"] is not None:
            config["epochs"] = given["epochs"]
        if data_dir is not None:
            config["data_dir"] = data_dir
        config["download"] = bool(args.download)
        return config, path.parent, ckpt

    task = tasks.get(given["task"] or "classify")
    data = given["data"] or task.default_data
    recipe = task.recipe(data).as_dict()
    if given["init_from"] is not None and given["arch"] is None:
        recipe["arch"] = _source_arch(given["init_from"]) or recipe["arch"]
    if given["optimizer"] not in (None, recipe["optimizer"]) and given["weight_decay"] is None:
        recipe["weight_decay"] = 1e-2 if given["optimizer"] == "adamw" else 0.0
    config = {k: (given[k] if given.get(k) is not None else v) for k, v in recipe.items()}
    config.update(
        task=task.name,
        data=data,
        name=data_name(data),
        data_dir=data_dir,
        download=bool(args.download),
        val_split=given["val_split"] if given["val_split"] is not None else 0.1,
        patience=given["patience"],
        limit=given["limit"],
        sync_bn=bool(given["sync_bn"]),
        seed=given["seed"] if given["seed"] is not None else 0,
        init_from=given["init_from"],
        freeze=given["freeze"],
        lr_head=given["lr_head"],
    )
    if not config["arch"]:
        config["arch"] = None
    out = Path(args.out) if args.out else Path("runs") / (
        f"{config['name']}-{time.strftime('%Y%m%d-%H%M%S')}")
    return config, out, None


def _source_model(arg: str) -> str:
    """The absolute path of the --init-from model file (a file or a run's folder)."""
    path = Path(arg).expanduser()
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise CLIError(f"--init-from {printable(arg)}: no model file there; give a "
                       "model.safetensors written by `cnnlab train` (or its --out folder)")
    return str(path.resolve())


def _source_arch(path: str) -> str | None:
    """The architecture string of a model file (None for a registered model)."""
    import cnnlab

    try:
        return cnnlab.io.read_spec(path).get("arch")
    except ValueError as exc:
        raise CLIError(f"--init-from: {exc}") from None


def _freeze(text: str) -> int | str:
    """``--freeze``: a whole number counts layers, anything else names one."""
    text = text.strip()
    if not text:
        raise argparse.ArgumentTypeError("expected a number of layers or a layer name, got ''")
    try:
        return int(text)
    except ValueError:
        return text


@contextlib.contextmanager
def _hold(out: Path) -> Iterator[None]:
    """Take the run folder for this process (created, checked writable, locked): a second
    training into the same --out is refused at once instead of silently losing a result,
    and a read-only --out is found before the first epoch."""
    from cnnlab.io.runlock import RunLock, RunLockedError

    try:
        lock = RunLock(out, f"--out {out}")
        lock.acquire()
    except RunLockedError as exc:
        raise CLIError(str(exc)) from None
    except OSError as exc:
        raise CLIError(exc.strerror or str(exc)) from None
    try:
        yield
    finally:
        lock.release()


def _claim(out: Path, resume: dict | None, overwrite: bool) -> None:
    """Refuse to start a new run over a finished or interrupted one unless --overwrite is
    given; then remove the old run's files, so none of them is mistaken for the new run's."""
    if resume is not None:
        return
    files = [out / name for name in (MODEL_FILE, CHECKPOINT_FILE, HISTORY_JSON, HISTORY_CSV,
                                     CURVES_FILE)]
    if not any(f.exists() for f in files[:2]):
        return
    if not overwrite:
        raise CLIError(f"{out} already holds a training run; continue it with --resume {out}, "
                       "start a new one in its place with --overwrite, or choose another --out")
    for f in files:
        f.unlink(missing_ok=True)


def _optimizer(config: dict[str, Any], params):
    from cnnlab import optim

    params = list(params)
    lr, wd = config["lr"], config["weight_decay"]
    if config["optimizer"] == "sgd":
        return optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=wd)
    if config["optimizer"] == "adamw":
        return optim.AdamW(params, lr=lr, weight_decay=wd)
    return optim.Adam(params, lr=lr, weight_decay=wd)


def _scheduler(config: dict[str, Any], optimizer):
    from cnnlab import optim

    if config["schedule"] == "cosine":
        return optim.CosineAnnealingLR(optimizer, T_max=config["epochs"])
    if config["schedule"] == "step":
        return optim.StepLR(optimizer, step_size=max(1, config["epochs"] // 3), gamma=0.1)
    return None


# ------------------------------------------------------------------------------ helpers


def open_data(data: str, split: str, **kwargs):
    """``cnnlab.train.recipes.open_data``, its errors turned into messages for the terminal
    (kept whole: they list the files to put where)."""
    from cnnlab.data import DataFormatError, DownloadError
    from cnnlab.train import recipes

    try:
        return recipes.open_data(data, split, **kwargs)
    except (FileNotFoundError, DataFormatError, DownloadError, ValueError) as exc:
        raise CLIError(str(exc).strip() or type(exc).__name__) from exc


def _last_good(checkpoint) -> str:
    if checkpoint.saved_epoch is None:
        if checkpoint.path.exists():
            return f"the last good checkpoint is {checkpoint.path}"
        return "no checkpoint had been written yet"
    return f"the last good checkpoint is {checkpoint.path} (epoch {checkpoint.saved_epoch})"


def _plot(history: list[dict], path: Path) -> None:
    """Draw curves.png when the inspect package and matplotlib are there; never fail."""
    try:
        from cnnlab.inspect.curves import plot_history
    except ImportError:
        return
    try:
        plot_history(history, path, title=path.parent.resolve().name)  # as `cnnlab plot`
    except ImportError:
        return  # matplotlib is optional
    except Exception as exc:  # a picture is not worth failing a finished run
        print(f"note: could not draw {path.name}: {exc}", file=sys.stderr)


def _listing(out: Path) -> str:
    names = [CHECKPOINT_FILE, HISTORY_JSON, HISTORY_CSV, CURVES_FILE]
    return ", ".join(n for n in names if (out / n).exists())


def _number(text: str, cast, expected: str, ok) -> float:
    """Parse one option value, or tell argparse what was expected (a usage error, exit 2)."""
    try:
        value = cast(text)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def _recipe_defaults(field: str) -> str:
    """A recipe setting for each named dataset and for a folder, for the --help text."""
    from cnnlab.train.recipes import FOLDER_RECIPE, RECIPES

    def show(v):
        return f"{v:g}" if isinstance(v, float) else str(v)

    parts = [f"{name} {show(getattr(r, field))}" for name, r in RECIPES.items()]
    return ", ".join([*parts, f"a folder of images {show(getattr(FOLDER_RECIPE, field))}"])


def positive_int(text: str) -> int:
    return _number(text, int, "a whole number >= 1", lambda v: v >= 1)


def _positive_float(text: str) -> float:
    return _number(text, float, "a number > 0", lambda v: 0 < v < float("inf"))


def _non_negative_float(text: str) -> float:
    return _number(text, float, "a number >= 0", lambda v: 0 <= v < float("inf"))


def _fraction(text: str) -> float:
    return _number(text, float, "a number between 0 and 1", lambda v: 0 < v < 1)
