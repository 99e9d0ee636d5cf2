"""The child process: measures one framework on one workload and writes a JSON result.

Run by the driver as ``python -m benchmarks.worker JOB.json``; the job file names the
framework, the workload, the shared inputs (.npz), the thread count and where to write the
result. The thread environment variables are set by the driver before this process starts;
here only torch's own pool size is set (``torch.set_num_threads``).
"""

from __future__ import annotations

import gc
import json
import os
import resource
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.frameworks import make_runner
from benchmarks.workloads import read_inputs


def current_rss_mib() -> float:
    """Resident set size of this process now, in MiB (Linux /proc; 0.0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (ru_maxrss, KiB on Linux), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_calls(fn: Callable[[], object], warmup: int, min_reps: int, min_time: float,
               max_reps: int, cpu_times: list[float] | None = None) -> list[float]:
    """Call ``fn`` ``warmup`` times, then time it until both ``min_reps`` calls and
    ``min_time`` seconds are reached (at most ``max_reps`` calls). Returns seconds per call;
    ``cpu_times``, if given, receives the CPU seconds this process spent on each call (all
    its threads): for a one-thread run on a busy machine, close to the wall time it would
    take on an idle one."""
    for _ in range(warmup):
        fn()
    gc.collect()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_reps or (
        time.perf_counter() - start < min_time and len(times) < max_reps
    ):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if cpu_times is not None:
            cpu_times.append(time.process_time() - c0)
    return times


def busy_cpu_seconds() -> float | None:
    """CPU seconds all processes on the machine have spent busy (from /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """Measures how many cores *other* processes kept busy while this one was timed.

    On a shared machine that number says whether a timing can be trusted: anything well
    above 0 means the measured framework did not have the cores to itself.
    """

    def __enter__(self) -> OtherLoad:
        self.busy0, self.own0, self.t0 = busy_cpu_seconds(), os.times(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        busy1, own1 = busy_cpu_seconds(), os.times()
        wall = time.perf_counter() - self.t0
        self.cores = None
        # /proc/stat counts in clock ticks (10 ms): too coarse for a shorter window.
        if self.busy0 is not None and busy1 is not None and wall >= 0.5:
            own = (own1.user - self.own0.user) + (own1.system - self.own0.system)
            self.cores = max(0.0, (busy1 - self.busy0 - own) / wall)


def blas_info() -> list[dict]:
    """Thread pools loaded in this process (threadpoolctl), or [] when it is not installed."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keep = ("internal_api", "prefix", "version", "num_threads", "architecture",
            "threading_layer")
    return [{k: p.get(k) for k in keep} for p in threadpool_info()]


def run_job(job: dict) -> dict:
    framework = job["framework"]
    workload = job["workload"]
    threads = int(job["threads"])
    result: dict = {"framework": framework, "workload": workload["name"]}
    if framework.startswith("torch"):
        import torch

        torch.set_num_threads(threads)
        result["torch_threads"] = torch.get_num_threads()
        result["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        result["torch_mkldnn"] = bool(torch.backends.mkldnn.is_available())
    weights, x, y = read_inputs(job["inputs"])
    runner = make_runner(framework, job["layers"], weights, x, y, threads)
    if framework == "cnnlab" and hasattr(runner.cnnlab, "get_num_threads"):
        result["cnnlab_threads"] = runner.cnnlab.get_num_threads()
    result["base_rss_mib"] = current_rss_mib()

    # Correctness first, on the untouched initial weights: every framework must agree.
    if workload["task"] == "train":
        loss, grads = runner.loss_and_grads()
        result["check_loss"] = loss
        np.savez(job["check_out"], **grads)
        fn = runner.train_step
    else:
        runner.eval()
        np.savez(job["check_out"], logits=np.asarray(runner.infer()))
        fn = runner.infer

    with OtherLoad() as load:
        cpu: list[float] = []
        times = time_calls(fn, job["warmup"], job["min_reps"], job["min_time"], job["max_reps"],
                           cpu)
    ms = [t * 1e3 for t in times]
    result.update(
        median_ms=statistics.median(ms),
        cpu_median_ms=statistics.median(cpu) * 1e3,
        min_ms=min(ms),
        max_ms=max(ms),
        mean_ms=statistics.fmean(ms),
        reps=len(ms),
        peak_rss_mib=peak_rss_mib(),
        other_cpu_cores=load.cores,
        threadpools=blas_info(),
    )
    result["step_rss_mib"] = max(result["peak_rss_mib"] - result["base_rss_mib"], 0.0)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job = json.loads(Path(argv[0]).read_text())
    try:
        if job.get("mode") == "profile":
            from benchmarks.opprofile import profile_job

            result = profile_job(job)
        else:
            result = run_job(job)
    except Exception as exc:  # reported to the driver, which shows it in the table
        result = {
            "framework": job.get("framework"),
            "workload": job.get("workload", {}).get("name"),
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(limit=8),
        }
    Path(job["result"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
