"""ONNX: how long an export takes, and inference in onnxruntime against cnnlab.

Usage::

    python -m benchmarks.onnx_speed [--threads N] [--presets lenet5,cifar-small]
                                    [--batches 1,64] [--pad] [--quick] [--json]

The driver builds each preset (seed 0), exports it to ONNX (the export's median time over
several runs, tracing and ``onnx.checker`` included) and saves it as a cnnlab model file;
then, for each batch size, cnnlab (with ``nn.fuse``) and onnxruntime each run in a fresh
process with the same thread count (``CNNLAB_NUM_THREADS``/``OMP_NUM_THREADS`` and onnxruntime's
intra-op threads), on the same batch, and report the median time of a forward pass after
a warm-up. Each worker also writes its outputs, and the driver checks they agree.
``--pad`` also times the ``pad`` op that imported graphs use, forward and backward, against
PyTorch's ``F.pad`` (each in its own process, same threads).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    _root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(_root))

import numpy as np  # noqa: E402

from benchmarks.sysinfo import machine_info, package_version  # noqa: E402
from benchmarks.worker import time_calls  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "CNNLAB_NUM_THREADS")


def _plan(batch: int, quick: bool) -> dict:
    if quick:
        return {"warmup": 1, "min_reps": 2, "min_time": 0.0, "max_reps": 2}
    if batch == 1:
        return {"warmup": 20, "min_reps": 100, "min_time": 2.0, "max_reps": 5000}
    return {"warmup": 3, "min_reps": 10, "min_time": 2.0, "max_reps": 1000}


PAD_CASES = [((64, 32, 16, 16), (1, 1, 1, 1), "constant"),
             ((64, 32, 16, 16), (1, 1, 1, 1), "reflect"),
             ((64, 32, 16, 16), (2, 1, 0, 3), "replicate")]


def pad_worker(job: dict) -> dict:
    """Time ``pad`` forward + backward in one framework (run in a fresh process)."""
    shape, widths, mode = job["case"]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    if job["framework"] == "cnnlab":
        import cnnlab
        from cnnlab.ops.pad import pad

        cnnlab.set_num_threads(job["threads"])
        t = cnnlab.Tensor(x, requires_grad=True)

        def run():
            out = pad(t, widths, mode)
            out.backward(np.ones(out.shape, np.float32))
            return out.data
    else:
        import torch

        torch.set_num_threads(job["threads"])
        t = torch.tensor(x, requires_grad=True)

        def run():
            out = torch.nn.functional.pad(t, widths, mode)
            out.backward(torch.ones_like(out))
            return out.detach().numpy()

    out = run()
    np.save(job["output"], out)
    times = time_calls(run, **job["plan"])
    return {"median_ms": 1e3 * statistics.median(times), "min_ms": 1e3 * min(times),
            "reps": len(times)}


def worker(job: dict) -> dict:
    """Time one framework's forward pass (run in a fresh process)."""
    if "case" in job:
        return pad_worker(job)
    x = np.load(job["input"])
    threads = job["threads"]
    if job["framework"] == "cnnlab":
        import cnnlab

        cnnlab.set_num_threads(threads)
        model = cnnlab.nn.fuse(cnnlab.io.load_model(job["model"]))  # its fastest inference
        model.eval()
        tensor = cnnlab.Tensor(x)

        def run():
            with cnnlab.no_grad():
                return model(tensor).data
    else:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(job["onnx"], options,
                                               providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def run():
            return session.run(None, {name: x})[0]

    out = run()
    np.save(job["output"], out)
    times = time_calls(run, **job["plan"])
    return {"median_ms": 1e3 * statistics.median(times), "min_ms": 1e3 * min(times),
            "reps": len(times)}


def _child(job: dict, workdir: Path, env: dict[str, str]) -> dict:
    path = workdir / f"job-{job['framework']}-{job['tag']}.json"
    path.write_text(json.dumps(job))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.onnx_speed", "--worker",
                           str(path)], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        return {"error": f"worker exited with code {proc.returncode}: {tail}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(presets: list[str], batches: list[int], threads: int, quick: bool,
        pad_ops: bool = False) -> dict:
    import cnnlab
    from cnnlab import arch
    from cnnlab.onnx import export

    env = dict(os.environ)
    for var in THREAD_VARS:
        env[var] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + (
        [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for preset in presets:
            cnnlab.manual_seed(0)
            model = arch.build(preset)
            shape = arch.PRESET_INPUT_SHAPES[preset]
            model_path = cnnlab.io.save_model(model, workdir / f"{preset}.safetensors")
            onnx_path = workdir / f"{preset}.onnx"
            sample = np.zeros((1, *shape), np.float32)
            export_s = []
            for _ in range(1 if quick else 5):
                t0 = time.perf_counter()
                info = export(model, sample, onnx_path)
                export_s.append(time.perf_counter() - t0)
            for batch in batches:
                x = np.random.default_rng(batch).random((batch, *shape), dtype=np.float32)
                np.save(workdir / "x.npy", x)
                results = {}
                for framework in ("cnnlab", "onnxruntime"):
                    job = {"framework": framework, "tag": f"{preset}-{batch}",
                           "model": str(model_path), "onnx": str(onnx_path),
                           "input": str(workdir / "x.npy"), "threads": threads,
                           "output": str(workdir / f"out-{framework}.npy"),
                           "plan": _plan(batch, quick)}
                    results[framework] = _child(job, workdir, env)
                outs = [np.load(workdir / f"out-{f}.npy") for f in results
                        if "error" not in results[f]]
                error = (float(np.abs(outs[0] - outs[1]).max() / np.abs(outs[1]).max())
                         if len(outs) == 2 else None)
                rows.append({"preset": preset, "batch": batch, "nodes": info["nodes"],
                             "export_ms": 1e3 * statistics.median(export_s),
                             "cnnlab": results["cnnlab"], "onnxruntime": results["onnxruntime"],
                             "max_relative_error": error})
        pads = []
        for k, case in enumerate(PAD_CASES if pad_ops else []):
            results = {}
            for framework in ("cnnlab", "torch"):
                job = {"framework": framework, "tag": f"pad{k}", "case": case,
                       "threads": threads, "output": str(workdir / f"pad-{framework}.npy"),
                       "plan": _plan(64, quick)}
                results[framework] = _child(job, workdir, env)
            same = all("error" not in r for r in results.values()) and np.array_equal(
                np.load(workdir / "pad-cnnlab.npy"), np.load(workdir / "pad-torch.npy"))
            pads.append({"shape": case[0], "pad": case[1], "mode": case[2], **results,
                         "equal": bool(same)})
    return {"threads": threads, "machine": machine_info(),
            "onnx": package_version("onnx"), "onnxruntime": package_version("onnxruntime"),
            "torch": package_version("torch"), "results": rows, "pad": pads}


def render(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"machine:  {m['cpu']}, {m['usable_cores']} usable cores; Python {m['python']}, "
        f"NumPy {m['numpy']}, onnx {result['onnx']}, onnxruntime {result['onnxruntime']}",
        f"threads:  {result['threads']} in each framework, each in its own process",
        "",
        "| preset | batch | nodes | export ms | cnnlab ms | onnxruntime ms | "
        "onnxruntime/cnnlab | max rel. error |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["results"]:
        c, o = r["cnnlab"], r["onnxruntime"]
        if "error" in c or "error" in o:
            lines.append(f"| {r['preset']} | {r['batch']} | error: "
                         f"{c.get('error') or o.get('error')} |")
            continue
        lines.append(
            f"| {r['preset']} | {r['batch']} | {r['nodes']} | {r['export_ms']:.0f} | "
            f"{c['median_ms']:.3g} | {o['median_ms']:.3g} | "
            f"{o['median_ms'] / c['median_ms']:.2f} | {r['max_relative_error']:.1e} |")
    lines.append("")
    lines.append("onnxruntime/cnnlab: onnxruntime's time over cnnlab's (below 1: onnxruntime "
                 "is faster).")
    if result.get("pad"):
        lines += ["", f"pad forward + backward, cnnlab against torch {result['torch']}:", "",
                  "| input | pad | mode | cnnlab ms | torch ms | torch/cnnlab | equal |",
                  "|---|---|---|---|---|---|---|"]
        for r in result["pad"]:
            c, t = r["cnnlab"], r["torch"]
            if "error" in c or "error" in t:
                lines.append(f"| {r['shape']} | error: {c.get('error') or t.get('error')} |")
                continue
            lines.append(f"| {'x'.join(map(str, r['shape']))} | {tuple(r['pad'])} | "
                         f"{r['mode']} | {c['median_ms']:.3g} | {t['median_ms']:.3g} | "
                         f"{t['median_ms'] / c['median_ms']:.2f} | {r['equal']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.onnx_speed",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--presets", default="lenet5,cifar-small")
    p.add_argument("--batches", default="1,64")
    p.add_argument("--quick", action="store_true", help="few repetitions (a smoke test)")
    p.add_argument("--pad", action="store_true",
                   help="also time the pad op (used by imported graphs) against torch")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(Path(args.worker).read_text()))))
        return 0
    result = run(args.presets.split(","), [int(b) for b in args.batches.split(",")],
                 args.threads, args.quick, args.pad)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
