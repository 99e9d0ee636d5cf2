"""Optimizer steps: cnnlab against PyTorch, each framework in its own process.

Usage::

    python -m benchmarks.optimizers [--threads N] [--rounds N] [--quick] [--json]
                                    [--cases NAME,...]

Cases:

- ``step-<optimizer>``: one ``optimizer.step()`` over the CIFAR net's parameters (the
  float32 shapes of ``benchmarks.workloads.CIFAR_SMALL``, 10 arrays, about 106k values) with
  fixed gradients: the update's own cost inside a training step.
- ``lbfgs-image-<size>[-wolfe]``: ``LBFGS`` on one ``(1, 3, size, size)`` float32 image,
  the shape style transfer optimizes, with ``history_size=100`` already full before timing.
  The loss is a quadratic with per-pixel curvatures spread over six orders of magnitude (so
  the run keeps going for hundreds of iterations), computed in the closure by the same
  element-wise work in both frameworks, so the time is the optimizer's: reported per
  iteration, with the closure calls per iteration beside it.

Every child process gets the same thread variables (``--threads``) as in
``benchmarks.run``; torch also gets ``torch.set_num_threads``. Each case first checks that
both frameworks start from the same loss (LBFGS) or make the same first update (steps).
"other load" is how many cores other processes kept busy during each framework's run
(cnnlab/torch; "?" when the run was too short to tell): above ~0.2 the timing is disturbed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    _root = Path(__file__).resolve().parent.parent
    sys.path = [p for p in sys.path if Path(p or ".").resolve() != _root / "benchmarks"]
    sys.path.insert(0, str(_root))

import numpy as np  # noqa: E402

from benchmarks.run import REPO_ROOT, child_env  # noqa: E402
from benchmarks.sysinfo import machine_info, usable_cores  # noqa: E402
from benchmarks.worker import OtherLoad  # noqa: E402
from benchmarks.workloads import CIFAR_SMALL, param_shapes  # noqa: E402

FRAMEWORKS = ("cnnlab", "torch")
STEP_OPTIMIZERS = {
    "sgd-momentum": ("SGD", {"lr": 0.01, "momentum": 0.9}),
    "adam": ("Adam", {"lr": 1e-3}),
    "adamw": ("AdamW", {"lr": 1e-3}),
    "rmsprop": ("RMSprop", {"lr": 1e-3}),
    "adagrad": ("Adagrad", {"lr": 1e-2}),
    "adadelta": ("Adadelta", {"lr": 1.0}),
}
CASES = [f"step-{name}" for name in STEP_OPTIMIZERS] + [
    "lbfgs-image-256",
    "lbfgs-image-256-wolfe",
    "lbfgs-image-512",
]
QUICK_CASES = ["step-adam", "lbfgs-image-32-wolfe"]
WORKER_TIMEOUT_S = 900


# ------------------------------------------------------------------ the child
def _step_case(framework: str, name: str, quick: bool) -> dict:
    opt_name, kwargs = STEP_OPTIMIZERS[name]
    rng = np.random.default_rng(0)
    shapes = list(param_shapes(CIFAR_SMALL).values())
    values = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    if framework == "cnnlab":
        from cnnlab import optim
        from cnnlab.nn import Parameter

        params = [Parameter(v.copy()) for v in values]
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        opt = getattr(optim, opt_name)(params, **kwargs)

        def first():
            return params[0].data
    else:
        import torch

        params = [torch.tensor(v, requires_grad=True) for v in values]
        for p, g in zip(params, grads, strict=True):
            p.grad = torch.from_numpy(g)
        opt = getattr(torch.optim, opt_name)(params, **kwargs)

        def first():
            return params[0].detach().numpy()

    opt.step()
    check = float(np.abs(first() - values[0]).sum())  # the first update's size
    times = _time(opt.step, warmup=3, reps=20 if quick else 200)
    return {"ms": _summary(times), "check": check, "values": int(sum(v.size for v in values))}


def _lbfgs_case(framework: str, size: int, wolfe: bool, quick: bool) -> dict:
    rng = np.random.default_rng(1)
    shape = (1, 3, size, size)
    target = rng.standard_normal(shape).astype(np.float32)
    curvature = (10.0 ** rng.uniform(-3, 3, size=shape)).astype(np.float32)
    history = 5 if quick else 100
    settings = {
        "history_size": history,
        "max_iter": 20,
        "tolerance_grad": 0.0,
        "tolerance_change": 0.0,
        "line_search_fn": "strong_wolfe" if wolfe else None,
    }
    if not wolfe:
        settings["lr"] = 0.5
    if framework == "cnnlab":
        from cnnlab.nn import Parameter
        from cnnlab.optim import LBFGS

        image = Parameter(np.zeros(shape, dtype=np.float32))
        opt = LBFGS([image], **settings)

        def closure():
            diff = image.data - target
            image.grad = curvature * diff
            return 0.5 * float(np.vdot(image.grad, diff))

        def counts():
            return opt.state[0]["n_iter"], opt.state[0]["func_evals"]
    else:
        import torch

        image = torch.zeros(shape, requires_grad=True)
        t_target, t_curvature = torch.from_numpy(target), torch.from_numpy(curvature)
        opt = torch.optim.LBFGS([image], **settings)

        def closure():
            with torch.no_grad():
                diff = image - t_target
                image.grad = t_curvature * diff
                return 0.5 * float(torch.dot(image.grad.flatten(), diff.flatten()))

        def counts():
            state = opt.state[image]
            return state["n_iter"], state["func_evals"]

    first_loss = float(opt.step(closure))
    for _ in range(history // 20 + 1):  # fill the history before timing
        opt.step(closure)
    iters0, evals0 = counts()
    times = _time(lambda: opt.step(closure), warmup=0, reps=2 if quick else 5)
    iters, evals = (a - b for a, b in zip(counts(), (iters0, evals0), strict=True))
    per_iteration = [t * len(times) / iters for t in times]
    return {
        "ms": _summary(per_iteration),
        "check": first_loss,
        "values": int(np.prod(shape)),
        "evals_per_iteration": evals / iters,
    }


def _time(fn, warmup: int, reps: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _summary(seconds: list[float]) -> dict:
    ms = [1e3 * s for s in seconds]
    return {"median": statistics.median(ms), "min": min(ms), "max": max(ms), "reps": len(ms)}


def run_case(framework: str, case: str, threads: int, quick: bool) -> dict:
    """Measure one case in this process."""
    if framework == "torch":
        import torch

        torch.set_num_threads(threads)
    with OtherLoad() as load:
        if case.startswith("step-"):
            result = _step_case(framework, case[len("step-") :], quick)
        else:
            parts = case.split("-")  # lbfgs-image-<size>[-wolfe]
            result = _lbfgs_case(framework, int(parts[2]), parts[-1] == "wolfe", quick)
    result["other_cpu_cores"] = load.cores
    return result


# ----------------------------------------------------------------- the driver
def measure(case: str, threads: int, quick: bool, rounds: int = 1) -> dict[str, dict]:
    """Run ``case`` for every framework, each in a fresh process, ``rounds`` times (the
    frameworks take turns); keep each framework's round with the lowest median."""
    best: dict[str, dict] = {}
    for _ in range(rounds):
        for framework, result in _measure_once(case, threads, quick).items():
            old = best.get(framework)
            if (
                old is None
                or "error" in result
                or ("error" not in old and result["ms"]["median"] < old["ms"]["median"])
            ):
                best[framework] = result
    return best


def _measure_once(case: str, threads: int, quick: bool) -> dict[str, dict]:
    results = {}
    for framework in FRAMEWORKS:
        args = ["--worker", framework, "--cases", case, "--threads", str(threads)]
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.optimizers", *args, *(["--quick"] * quick)],
            cwd=REPO_ROOT,
            env=child_env(threads),
            capture_output=True,
            text=True,
            timeout=WORKER_TIMEOUT_S,
        )
        if proc.returncode != 0:
            tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
            results[framework] = {"error": f"exit code {proc.returncode}: {tail}"}
        else:
            results[framework] = json.loads(proc.stdout)
    return results


def render(rows: list[dict]) -> str:
    lines = [
        "| case | values | cnnlab ms | torch ms | torch/cnnlab | same start | other load |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ours, theirs = row["frameworks"]["cnnlab"], row["frameworks"]["torch"]
        if "error" in ours or "error" in theirs:
            lines.append(f"| {row['case']} | error: {ours.get('error') or theirs.get('error')} |")
            continue
        unit = " / iteration" if row["case"].startswith("lbfgs") else ""
        evals = (
            f" ({ours['evals_per_iteration']:.2f} / {theirs['evals_per_iteration']:.2f} calls)"
            if "evals_per_iteration" in ours
            else ""
        )
        load = "/".join(
            "?" if r["other_cpu_cores"] is None else f"{r['other_cpu_cores']:.1f}"
            for r in (ours, theirs)
        )
        lines.append(
            f"| {row['case']}{evals} | {ours['values']} | {_cell(ours)}{unit} | {_cell(theirs)} "
            f"| {row['torch_over_cnnlab']:.2f} | {row['same_start']} | {load} |"
        )
    return "\n".join(lines)


def _cell(r: dict) -> str:
    ms = r["ms"]
    return f"{ms['median']:.3g} ({ms['min']:.3g}-{ms['max']:.3g})"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=None, help="threads per framework (all cores)")
    p.add_argument("--quick", action="store_true", help="small sizes and few repetitions")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--cases", default=None, help=f"comma-separated, from: {', '.join(CASES)}")
    p.add_argument("--rounds", type=int, default=1, help="runs per case; the fastest is kept")
    p.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    threads = args.threads or usable_cores()
    cases = args.cases.split(",") if args.cases else (QUICK_CASES if args.quick else CASES)
    if args.worker:
        print(json.dumps(run_case(args.worker, cases[0], threads, args.quick)))
        return 0
    rows = []
    for case in cases:
        print(f"measuring {case} ...", file=sys.stderr)
        results = measure(case, threads, args.quick, args.rounds)
        row: dict = {"case": case, "frameworks": results}
        ok = all("error" not in r for r in results.values())
        if ok:
            ours, theirs = results["cnnlab"], results["torch"]
            row["torch_over_cnnlab"] = theirs["ms"]["median"] / ours["ms"]["median"]
            row["same_start"] = bool(np.isclose(ours["check"], theirs["check"], rtol=1e-3))
        rows.append(row)
    out = {"machine": machine_info(), "threads": threads, "results": rows}
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        m = out["machine"]
        print(
            f"machine: {m['cpu']}, {m['usable_cores']} usable cores; numpy {m['numpy']}, "
            f"torch {m['torch']}; {threads} threads each; float32"
        )
        print(render(rows))
    return 0 if all("error" not in r for row in rows for r in row["frameworks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
