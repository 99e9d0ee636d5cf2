"""Where cnnlab's training step spends its time: per op (forward and backward) and per kernel.

Two views, both measured in a worker process on the same workloads as the benchmark:

1. **Per op**: every ``cnnlab.tensor.Function`` subclass found in ``cnnlab.ops`` gets its
   ``forward`` and ``backward`` wrapped with a timer for the duration of the measurement, so
   each layer's forward and backward time is known; the optimizer step is timed too, and
   what is left of the step ("autograd + Python") is the engine's own overhead.
2. **Per function**: cProfile over the same steps, keeping only functions defined in
   ``cnnlab/`` (e.g. ``kernels/window.py:col2im_taps``). NumPy calls are not listed on their
   own; their time is in the cnnlab function that made them.
"""

from __future__ import annotations

import cProfile
import importlib
import pkgutil
import pstats
import statistics
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.workloads import ARCHS, write_inputs

PROFILE_STEPS = 30
QUICK_PROFILE_STEPS = 2


def _function_classes():
    """Every Function subclass defined in the cnnlab.ops package (imported on the way)."""
    import cnnlab.ops
    from cnnlab.tensor import Function

    for mod in pkgutil.iter_modules(cnnlab.ops.__path__):
        importlib.import_module(f"cnnlab.ops.{mod.name}")
    seen, todo = [], list(Function.__subclasses__())
    while todo:
        cls = todo.pop()
        if cls not in seen:
            seen.append(cls)
            todo.extend(cls.__subclasses__())
    return seen


def _label(cls_name: str, arrays: tuple, options: dict) -> str:
    """A readable name for one call site: the op and the shapes that tell layers apart."""
    x = arrays[0] if arrays else None
    shape = "x".join(map(str, x.shape[1:])) if hasattr(x, "shape") else "?"
    if cls_name == "Conv2d" and len(arrays) > 1:
        f, c, kh, kw = arrays[1].shape
        fused = " + ReLU" if options.get("relu") else ""
        return f"Conv2d {c}->{f} {kh}x{kw}{fused} on {shape}"
    if cls_name == "Linear" and len(arrays) > 1:
        out_f, in_f = arrays[1].shape
        return f"Linear {in_f}->{out_f}"
    return f"{cls_name} on {shape}"


class OpTimer:
    """Wraps forward/backward of Function subclasses with timers; ``restore()`` undoes it."""

    def __init__(self):
        self.forward = defaultdict(float)
        self.backward = defaultdict(float)
        self.calls = defaultdict(int)
        self.order: list[str] = []
        self._saved = []

    def install(self) -> None:
        for cls in _function_classes():
            for name in ("forward", "backward"):
                if name in cls.__dict__:
                    self._saved.append((cls, name, cls.__dict__[name]))
                    setattr(cls, name, self._wrap(cls.__name__, name, cls.__dict__[name]))

    def restore(self) -> None:
        for cls, name, fn in reversed(self._saved):
            setattr(cls, name, fn)
        self._saved.clear()

    def _wrap(self, cls_name: str, which: str, fn):
        timer = self

        if which == "forward":
            def forward(ctx, *arrays, **options):
                label = _label(cls_name, arrays, options)
                ctx._bench_label = label
                t0 = time.perf_counter()
                out = fn(ctx, *arrays, **options)
                timer.forward[label] += time.perf_counter() - t0
                timer.calls[label] += 1
                if label not in timer.order:
                    timer.order.append(label)
                return out
            return forward

        def backward(ctx, grad):
            t0 = time.perf_counter()
            out = fn(ctx, grad)
            timer.backward[getattr(ctx, "_bench_label", cls_name)] += time.perf_counter() - t0
            return out
        return backward


def _kernel_table(prof: cProfile.Profile, steps: int, root: Path) -> list[dict]:
    """cnnlab functions sorted by cumulative time, in ms per step."""
    stats = pstats.Stats(prof)
    rows = []
    for (filename, line, func), (_cc, ncalls, tottime, cumtime, _) in stats.stats.items():
        path = Path(filename)
        try:
            rel = path.resolve().relative_to(root)
        except ValueError:
            continue
        if rel.parts[0] not in ("kernels", "ops", "optim", "nn", "tensor.py"):
            continue
        rows.append({
            "function": f"{rel.as_posix()}:{line}:{func}",
            "calls_per_step": ncalls / steps,
            "self_ms": tottime / steps * 1e3,
            "cumulative_ms": cumtime / steps * 1e3,
        })
    rows.sort(key=lambda r: -r["cumulative_ms"])
    return rows


def profile_job(job: dict) -> dict:
    """Worker side: measure one cnnlab training workload three ways (plain, per op, cProfile)."""
    import cnnlab
    from benchmarks.frameworks import make_runner
    from benchmarks.worker import OtherLoad, blas_info
    from benchmarks.workloads import read_inputs

    weights, x, y = read_inputs(job["inputs"])
    runner = make_runner("cnnlab", job["layers"], weights, x, y, int(job["threads"]))
    steps = int(job["steps"])
    for _ in range(max(1, min(3, steps))):
        runner.train_step()

    plain = []
    with OtherLoad() as load:
        for _ in range(steps):
            t0 = time.perf_counter()
            runner.train_step()
            plain.append(time.perf_counter() - t0)

    timer = OpTimer()
    opt_step = runner.opt.step
    opt_time = 0.0

    def timed_opt_step():
        nonlocal opt_time
        t0 = time.perf_counter()
        opt_step()
        opt_time += time.perf_counter() - t0

    runner.opt.step = timed_opt_step
    timer.install()
    try:
        t_start = time.perf_counter()
        for _ in range(steps):
            runner.train_step()
        instrumented = time.perf_counter() - t_start
    finally:
        timer.restore()
        del runner.opt.step

    prof = cProfile.Profile()
    prof.enable()
    for _ in range(steps):
        runner.train_step()
    prof.disable()

    per = 1e3 / steps
    ops = [{"op": label, "forward_ms": timer.forward[label] * per,
            "backward_ms": timer.backward.get(label, 0.0) * per,
            "calls_per_step": timer.calls[label] / steps} for label in timer.order]
    op_total = sum(o["forward_ms"] + o["backward_ms"] for o in ops)
    by_type: dict[str, dict] = {}
    for o in ops:
        kind = o["op"].split()[0]
        t = by_type.setdefault(kind, {"forward_ms": 0.0, "backward_ms": 0.0})
        t["forward_ms"] += o["forward_ms"]
        t["backward_ms"] += o["backward_ms"]
    return {
        "framework": "cnnlab",
        "workload": job["workload"]["name"],
        "steps": steps,
        "step_median_ms": statistics.median(plain) * 1e3,
        "other_cpu_cores": load.cores,
        "instrumented_step_ms": instrumented * per,
        "ops": ops,
        "by_type": by_type,
        "optimizer_ms": opt_time * per,
        "other_ms": instrumented * per - op_total - opt_time * per,
        "functions": _kernel_table(prof, steps, Path(cnnlab.__file__).resolve().parent)[:25],
        "threadpools": blas_info(),
    }


def run_profiles(workloads, threads, quick, seed, workdir, env, run_worker, log) -> dict:
    """Driver side: one profiling worker per training workload."""
    workers = []
    for w in workloads:
        if w.task != "train":
            continue
        inputs = write_inputs(w, seed, workdir)
        job = {"mode": "profile", "framework": "cnnlab", "workload": w.to_dict(),
               "layers": ARCHS[w.arch]["layers"], "inputs": str(inputs), "threads": threads,
               "steps": QUICK_PROFILE_STEPS if quick else PROFILE_STEPS}
        r = run_worker(job, workdir, env)
        r.pop("check_file", None)
        log(f"profiled {w.name}: " + (r.get("error") or f"{r['step_median_ms']:.2f} ms/step"))
        workers.append(r)
    return {"workers": workers}


def _fmt(v: float) -> str:
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def render_profile(profile: dict) -> str:
    """Markdown tables: per op, per op type, and the top cnnlab functions."""
    from benchmarks.report import _table

    lines = []
    for r in profile["workers"]:
        if "error" in r:
            lines += [f"{r.get('workload')}: error: {r['error']}", ""]
            continue
        step = r["instrumented_step_ms"]
        others = r.get("other_cpu_cores")
        others = "" if others is None else f"; other processes used {others:.1f} cores"
        lines += [f"### {r['workload']}: {r['step_median_ms']:.2f} ms per step "
                  f"(instrumented {step:.2f} ms; {r['steps']} steps{others})", ""]
        rows = [[o["op"], _fmt(o["forward_ms"]), _fmt(o["backward_ms"]),
                 f"{100 * (o['forward_ms'] + o['backward_ms']) / step:.0f}%"] for o in r["ops"]]
        rows.append(["optimizer step (SGD momentum)", _fmt(r["optimizer_ms"]), "",
                     f"{100 * r['optimizer_ms'] / step:.0f}%"])
        rows.append(["autograd + Python (rest of the step)", _fmt(r["other_ms"]), "",
                     f"{100 * r['other_ms'] / step:.0f}%"])
        lines += _table(["op (per call site)", "forward ms", "backward ms", "share"], rows)
        lines.append("")
        type_rows = sorted(r["by_type"].items(),
                           key=lambda kv: -(kv[1]["forward_ms"] + kv[1]["backward_ms"]))
        lines += _table(["op type", "forward ms", "backward ms", "share"], [
            [k, _fmt(v["forward_ms"]), _fmt(v["backward_ms"]),
             f"{100 * (v['forward_ms'] + v['backward_ms']) / step:.0f}%"]
            for k, v in type_rows])
        lines.append("")
        lines += _table(["cnnlab function (cProfile)", "calls/step", "self ms", "cumulative ms"], [
            [f["function"], f"{f['calls_per_step']:.0f}", _fmt(f["self_ms"]),
             _fmt(f["cumulative_ms"])] for f in r["functions"][:15]])
        lines.append("")
    return "\n".join(lines)
