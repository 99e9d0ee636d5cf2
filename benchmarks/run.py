"""Benchmark driver: cnnlab against PyTorch (NCHW and channels_last) and textbook NumPy.

Usage::

    python -m benchmarks.run [--json] [--threads N] [--quick] [--profile]
                             [--workloads NAME,...] [--frameworks NAME,...]

Each (framework, workload) pair runs in a fresh child process (``benchmarks.worker``) so
thread pools never compete and peak RSS belongs to that one case. Every child gets the same
environment (thread variables set to ``--threads``, everything else inherited, MALLOC_*
included), loads the same float32 weights and data batch from an .npz the driver wrote, and
first computes loss and gradients on the initial weights; the driver checks they agree with
PyTorch before trusting any timing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (python benchmarks/run.py): import the package from the repo root.
    _root = Path(__file__).resolve().parent.parent
    sys.path = [p for p in sys.path if Path(p or ".").resolve() != _root / "benchmarks"]
    sys.path.insert(0, str(_root))

import numpy as np  # noqa: E402

from benchmarks import report  # noqa: E402
from benchmarks.frameworks import FRAMEWORKS  # noqa: E402
from benchmarks.sysinfo import machine_info, usable_cores  # noqa: E402
from benchmarks.workloads import (  # noqa: E402
    ARCHS,
    find_workloads,
    frameworks_for,
    write_inputs,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "CNNLAB_NUM_THREADS")
# Gradients differ by float32 rounding, and more where a max-pool window's two largest values
# are within rounding of each other and the frameworks pick different winners (seen: 2e-3
# between torch's own NCHW and channels_last on the CIFAR net); a real bug gives order 1.
CHECK_TOLERANCE = 1e-2
WORKER_TIMEOUT_S = 900


def timing_plan(task: str, batch: int, quick: bool) -> dict:
    """Warm-up calls, minimum repetitions and minimum seconds of timing for one case."""
    if quick:
        return {"warmup": 1, "min_reps": 2, "min_time": 0.0, "max_reps": 2}
    if task == "infer" and batch == 1:
        return {"warmup": 20, "min_reps": 100, "min_time": 2.0, "max_reps": 5000}
    return {"warmup": 3, "min_reps": 7, "min_time": 2.0, "max_reps": 1000}


def child_env(threads: int) -> dict[str, str]:
    """The environment every worker gets: ours, with all thread counts set to ``threads``."""
    env = dict(os.environ)
    for var in THREAD_VARS:
        env[var] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    return env


def run_worker(job: dict, workdir: Path, env: dict[str, str]) -> dict:
    """Run one job in a fresh Python process; return its result dict (with "error" on failure)."""
    tag = (f"{job['framework']}-{job['workload']['name']}-{job.get('mode', 'bench')}"
           f"-{job.get('round', 0)}")
    job_path = workdir / f"job-{tag}.json"
    job["result"] = str(workdir / f"result-{tag}.json")
    job["check_out"] = str(workdir / f"check-{tag}.npz")
    job_path.write_text(json.dumps(job))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.worker", str(job_path)],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"worker did not finish within {WORKER_TIMEOUT_S} s"}
    result_path = Path(job["result"])
    if not result_path.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"error": f"worker exited with code {proc.returncode}: " + " | ".join(tail)}
    result = json.loads(result_path.read_text())
    result["check_file"] = job["check_out"]
    return result


def merge_rounds(rounds: list[dict], spare_cores: int = 0) -> dict:
    """Combine one framework's rounds: the fastest median among the rounds that other
    processes did not disturb (all rounds if every one was), and the extremes over all
    rounds. A round that failed makes the whole result an error."""
    for r in rounds:
        if "error" in r:
            return r
    quiet = [r for r in rounds
             if (r.get("other_cpu_cores") or 0) <= spare_cores + report.DISTURBED_CORES]
    best = min(quiet or rounds, key=lambda r: r["median_ms"])
    merged = dict(best)
    merged.update(
        min_ms=min(r["min_ms"] for r in rounds),
        max_ms=max(r["max_ms"] for r in rounds),
        reps=sum(r["reps"] for r in rounds),
        round_medians_ms=[r["median_ms"] for r in rounds],
        round_cpu_medians_ms=[r.get("cpu_median_ms") for r in rounds],
        peak_rss_mib=max(r["peak_rss_mib"] for r in rounds),
        step_rss_mib=max(r["step_rss_mib"] for r in rounds),
        round_other_cpu_cores=[r.get("other_cpu_cores") for r in rounds],
    )
    return merged


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / ||b|| (Frobenius): robust to one max-pool winner flipping on a near-tie."""
    denom = float(np.linalg.norm(b)) or 1.0
    return float(np.linalg.norm(a.astype(np.float64) - b) / denom)


def check_against_reference(results: dict[str, dict]) -> dict:
    """Compare every framework's first-step gradients (or logits) with the reference's.

    The reference is torch NCHW when it ran, else the first framework that ran.
    """
    ok = [f for f in FRAMEWORKS if f in results and "error" not in results[f]]
    if not ok:
        return {}
    ref = "torch_nchw" if "torch_nchw" in ok else ok[0]
    with np.load(results[ref]["check_file"], allow_pickle=False) as f:
        ref_arrays = {k: f[k] for k in f.files}
    out: dict = {"reference": ref, "tolerance": CHECK_TOLERANCE, "frameworks": {}}
    for fw in ok:
        with np.load(results[fw]["check_file"], allow_pickle=False) as f:
            if set(f.files) != set(ref_arrays):
                err = float("inf")
            else:
                err = max(relative_error(f[k], ref_arrays[k]) for k in ref_arrays)
        entry = {"max_rel_err": err, "ok": err <= CHECK_TOLERANCE}
        if "check_loss" in results[fw]:
            entry["loss"] = results[fw]["check_loss"]
        out["frameworks"][fw] = entry
    out["ok"] = all(e["ok"] for e in out["frameworks"].values())
    return out


def summarize(workload, results: dict[str, dict]) -> dict:
    """One row: per-framework timings plus the torch/cnnlab and textbook/cnnlab ratios."""
    def median(fw):
        r = results.get(fw)
        return r["median_ms"] if r and "error" not in r else None

    torch_times = {fw: median(fw) for fw in ("torch_nchw", "torch_channels_last")}
    torch_times = {k: v for k, v in torch_times.items() if v is not None}
    row = {
        **workload.to_dict(),
        "arch_text": ARCHS[workload.arch]["text"],
        "input_shape": list(ARCHS[workload.arch]["input"]),
        "frameworks": {fw: {k: v for k, v in r.items() if k != "check_file"}
                       for fw, r in results.items()},
        "check": check_against_reference(results),
        "torch_best": None,
        "torch_over_cnnlab": None,
        "cnnlab_speedup_over_textbook": None,
    }
    cn = median("cnnlab")
    if torch_times:
        best = min(torch_times, key=torch_times.get)
        row["torch_best"] = best
        if cn:
            row["torch_over_cnnlab"] = torch_times[best] / cn
    tb = median("textbook")
    if cn and tb:
        row["cnnlab_speedup_over_textbook"] = tb / cn
    return row


def available_frameworks(requested: list[str] | None) -> tuple[list[str], list[str]]:
    """(frameworks to run, frameworks skipped with a reason printed by the caller)."""
    wanted = requested or list(FRAMEWORKS)
    for fw in wanted:
        if fw not in FRAMEWORKS:
            raise SystemExit(f"unknown framework {fw!r}; expected some of {', '.join(FRAMEWORKS)}")
    has_torch = importlib.util.find_spec("torch") is not None
    run = [fw for fw in wanted if has_torch or not fw.startswith("torch")]
    return run, [fw for fw in wanted if fw not in run]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Time cnnlab against PyTorch and a textbook NumPy CNN, each in its own "
        "process with the same threads, weights and data.",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for every framework (default: all usable cores)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 warm-up and 2 timed repetitions per case")
    p.add_argument("--profile", action="store_true",
                   help="instead of the comparison, break cnnlab's training step down by op")
    p.add_argument("--workloads", default=None,
                   help="comma-separated workload names (default: all standard ones)")
    p.add_argument("--frameworks", default=None,
                   help=f"comma-separated, some of {','.join(FRAMEWORKS)} (default: all)")
    p.add_argument("--rounds", type=int, default=1,
                   help="run every case this many times, frameworks interleaved, and keep "
                   "each one's fastest undisturbed round (for busy machines; default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the batch")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    threads = args.threads or usable_cores()
    if threads < 1:
        raise SystemExit(f"--threads must be at least 1, got {threads}")
    if args.rounds < 1:
        raise SystemExit(f"--rounds must be at least 1, got {args.rounds}")
    try:
        workloads = find_workloads(args.workloads.split(",") if args.workloads else None)
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    frameworks, skipped = available_frameworks(
        args.frameworks.split(",") if args.frameworks else None)
    env = child_env(threads)
    def log(msg: str) -> None:  # progress goes to stderr, so --json's stdout stays pure JSON
        print(msg, file=sys.stderr, flush=True)

    if skipped:
        log(f"skipping {', '.join(skipped)}: torch is not importable")

    info = machine_info()
    out: dict = {
        "machine": info,
        "threads": threads,
        "child_env": {k: env[k] for k in THREAD_VARS},
        "quick": args.quick,
        "rounds": args.rounds,
        "load_average_before": list(os.getloadavg()),
        "seed": args.seed,
        "definitions": {
            "train": "zero_grad + forward + mean cross-entropy + backward + SGD "
            "(lr 0.01, momentum 0.9) update",
            "infer": "forward only, evaluation mode, no autograd graph",
            "median_ms": "median wall time of one call, milliseconds (with --rounds R: "
            "the lowest of the undisturbed rounds' medians)",
            "cpu_median_ms": "median CPU time of one call (all of the process's threads), "
            "milliseconds: with one thread on a busy machine, close to an idle machine's "
            "wall time",
            "torch_over_cnnlab": "median(faster torch layout) / median(cnnlab); "
            "1.0 = as fast as torch",
            "peak_rss_mib": "ru_maxrss of the worker process (imports included)",
            "step_rss_mib": "peak RSS minus RSS after setup (model, data, imports)",
            "other_cpu_cores": "cores kept busy by other processes while this case was "
            "timed (/proc/stat minus this process); more than ~0.2 above the cores this run "
            "leaves idle means the timing was disturbed",
        },
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cnnlab-bench-") as tmp:
        workdir = Path(tmp)
        if args.profile:
            from benchmarks.opprofile import run_profiles

            out["profile"] = run_profiles(workloads, threads, args.quick, args.seed, workdir,
                                          env, run_worker, log)
        else:
            out["results"] = []
            total = sum(len(frameworks_for(w.arch, frameworks)) for w in workloads) * args.rounds
            done = 0
            for workload in workloads:
                inputs = write_inputs(workload, args.seed, workdir)
                plan = timing_plan(workload.task, workload.batch, args.quick)
                fws = frameworks_for(workload.arch, frameworks)
                rounds: dict[str, list[dict]] = {fw: [] for fw in fws}
                for rnd in range(args.rounds if fws else 0):
                    # Rotate the order each round so no framework always runs first or last.
                    shift = rnd % len(fws)
                    for fw in fws[shift:] + fws[:shift]:
                        done += 1
                        job = {"framework": fw, "workload": workload.to_dict(),
                               "layers": ARCHS[workload.arch]["layers"],
                               "inputs": str(inputs), "threads": threads, "round": rnd, **plan}
                        r = run_worker(job, workdir, env)
                        rounds[fw].append(r)
                        status = r.get("error") or f"{r['median_ms']:.3f} ms"
                        log(f"[{done}/{total}] {workload.name:<18} {fw:<20} {status}")
                spare = max(0, info["usable_cores"] - threads)
                results = {fw: merge_rounds(rs, spare) for fw, rs in rounds.items()}
                out["results"].append(summarize(workload, results))
    out["wall_s"] = time.perf_counter() - started
    out["load_average_after"] = list(os.getloadavg())

    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(report.render(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
