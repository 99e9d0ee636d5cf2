"""Data-parallel training on this machine: images per second on 1 and 2 ranks, the bytes
each step reduces, and whether starting a bucket's reduction during backward pays.

Usage::

    python -m benchmarks.distributed [--presets digits,mnist] [--rounds 5] [--steps 40]
                                     [--overlap] [--json]
    python -m benchmarks.distributed --cost-model [--rounds 3]

Each case runs ``cnnlab.train.fit`` (DistributedDataParallel, DistributedSampler and the
DistributedTraining callback, Adam, the preset's recipe batch) on synthetic images of the
preset's input shape in fresh processes: ``mpirun -np 2`` for two ranks, a plain process for
one. Every rank has one thread (CNNLAB/OMP/OPENBLAS_NUM_THREADS=1), so two ranks use the
two cores; for comparison, one process also runs with a thread per core. A timing callback
on rank 0 records each step; a case's figure is the median step after warm-up. The cases are
interleaved round by round and each figure is the median over rounds, with the range,
because other processes may share the machine (the load average is printed).

Batches: "strong" keeps the step's batch at the recipe's (each of N ranks does 1/N of it);
"weak" gives every rank the recipe's batch (the step's batch grows with N).

``--cost-model`` measures one process on all cores (a machine of a cluster) doing a step of
every preset at its recipe batch — its CPU time over its cores, which a busy machine does
not inflate as it does the wall time — and sets it against the time a ring all-reduce of the
step's gradients would take on 8 to 64 such machines at 10 and 25 Gbit/s (see
``docs/distributed.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    _root = Path(__file__).resolve().parent.parent
    sys.path = [p for p in sys.path if Path(p or ".").resolve() != _root / "benchmarks"]
    sys.path.insert(0, str(_root))

import numpy as np  # noqa: E402

from benchmarks.sysinfo import machine_info  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
RECIPE_BATCH = {"digits": 32, "mnist": 64, "mnist-large": 64, "lenet5": 64, "cifar-small": 64}
THREAD_VARS = ("CNNLAB_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "MKL_NUM_THREADS")
# The cost model: machines, link speeds, and the time a message takes however small it is
# (MPI over TCP on 10/25 GbE: a few tens of microseconds per hop; RDMA: a few).
MACHINES = (8, 16, 32, 64)
LINKS_GBIT = (10, 25)
LATENCY_S = 25e-6
# --overlap: buckets this small split every preset's gradients in several.
OVERLAP_BUCKET_MB = 0.25


def ring_allreduce_seconds(nbytes: float, machines: int, gbit: float,
                           latency: float = LATENCY_S) -> float:
    """A ring all-reduce: 2(N-1) steps, each sending 1/N of the data to the next machine
    (reduce-scatter, then all-gather): 2(N-1)/N x bytes / bandwidth + 2(N-1) x latency."""
    n = machines
    return 2 * (n - 1) / n * nbytes / (gbit * 1e9 / 8) + 2 * (n - 1) * latency


def halving_doubling_seconds(nbytes: float, machines: int, gbit: float,
                             latency: float = LATENCY_S) -> float:
    """Rabenseifner's all-reduce (reduce-scatter by recursive halving, all-gather by
    recursive doubling), which MPI libraries use for all but the largest messages: the ring's
    bytes in 2 log2(N) steps instead of 2(N-1)."""
    n = machines
    return 2 * (n - 1) / n * nbytes / (gbit * 1e9 / 8) + 2 * np.log2(n) * latency


# ------------------------------------------------------------------- what a step reduces


def step_bytes(preset: str) -> dict:
    """Bytes every rank contributes per training step, by collective, for a preset with 10
    classes at its input shape (float32 parameters)."""
    import cnnlab
    from cnnlab import nn

    model = cnnlab.arch.build(preset, num_classes=10)
    params = sum(p.data.nbytes for p in model.parameters() if p.requires_grad)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    buffers = sum(b.nbytes for b in model.buffers())
    return {
        "preset": preset,
        "parameters": sum(p.data.size for p in model.parameters()),
        "gradient_allreduce": params,  # DistributedDataParallel's buckets
        # DistributedTraining: loss, hits and what they are out of, images, stop (float64)
        "metrics_allreduce": 5 * 8,
        "buffer_broadcast": buffers,  # BatchNorm running statistics, from rank 0
        "batchnorm_layers": len(bns),
        # --sync-bn, per BatchNorm layer: all_gather of (count, means, M2) in float64
        # forward and all_reduce of two float32 vectors backward.
        "syncbn_allgather": sum((2 * m.num_features + 1) * 8 for m in bns),
        "syncbn_allreduce": sum(2 * m.num_features * 4 for m in bns),
    }


# ------------------------------------------------------------------------------ worker


def allreduce_worker(job: dict) -> None:
    """Every rank: the time of one Allreduce of each preset's gradients alone (a barrier
    first, so that no rank's lateness is counted), median of many."""
    from cnnlab import distributed as dist

    dist.init()
    times = {}
    for preset, nbytes in job["sizes"].items():
        buf = np.ones(nbytes // 4, dtype=np.float32)
        samples = []
        for rep in range(job["reps"] + 10):
            dist.barrier()
            start = time.perf_counter()
            dist.all_reduce(buf)
            if rep >= 10:
                samples.append(time.perf_counter() - start)
        times[preset] = float(np.median(samples) * 1e3)
    if dist.rank() == 0:
        Path(job["out"]).write_text(json.dumps(times))


def worker(job: dict) -> None:
    """One case, on every rank: fit on synthetic data, rank 0 writes the step times."""
    import cnnlab
    from cnnlab import distributed as dist
    from cnnlab.distributed import ddp

    if job.get("allreduce"):
        allreduce_worker(job)
        return
    if job["ranks"] > 1:
        dist.init()
    n, me = dist.world_size(), dist.rank()
    preset, batch = job["preset"], job["batch"]  # batch: the step's, over all ranks
    shape = cnnlab.arch.PRESET_INPUT_SHAPES[preset]
    steps = job["warmup"] + job["steps"]
    images = batch * steps
    rng = np.random.default_rng(0)
    x = rng.random((images, *shape), dtype=np.float32)
    y = rng.integers(0, 10, images)

    comm_seconds = [0.0]
    reduce = ddp._Bucket.reduce

    def timed_reduce(bucket):  # the time the reduction holds the step up
        start = time.perf_counter()
        reduce(bucket)
        comm_seconds[0] += time.perf_counter() - start

    ddp._Bucket.reduce = timed_reduce

    cnnlab.manual_seed(0)
    model = cnnlab.arch.build(preset, num_classes=10)
    net = dist.DistributedDataParallel(model, bucket_cap_mb=job.get("bucket_mb", 4.0))
    if net._reducer is not None:
        net._reducer.overlap = job["overlap"]
    opt = cnnlab.optim.Adam(net.parameters(), lr=2e-3)

    class Clock(cnnlab.train.Callback):
        def __init__(self):
            self.times, self.comm, self.cpu = [], [], []

        def on_batch_end(self, state):
            self.times.append(time.perf_counter())
            self.comm.append(comm_seconds[0])
            self.cpu.append(time.process_time())  # this rank's CPU, all its threads

    clock = Clock()
    cnnlab.train.fit(net, opt, (x, y), epochs=1, batch_size=batch // n,
                     sampler=dist.DistributedSampler(images, seed=0),
                     callbacks=[dist.DistributedTraining(), clock])
    # CPU time counts the work whatever else runs on the machine: summed over the ranks, it
    # is what a step costs, while the wall time also holds waiting for a core.
    cpu = dist.all_reduce(float(np.median(np.diff(clock.cpu)[job["warmup"] - 1:])), "sum")
    if me == 0:
        t = np.diff(clock.times)[job["warmup"] - 1:]
        c = np.diff(clock.comm)[job["warmup"] - 1:]
        Path(job["out"]).write_text(json.dumps({
            "step_ms": float(np.median(t) * 1e3), "reduce_ms": float(np.median(c) * 1e3),
            "images_per_s": float(batch / np.median(t)),
            "cpu_ms": cpu * 1e3, "images_per_cpu_s": batch / cpu,
            "buckets": len(net.bucket_sizes()),
        }))


# ------------------------------------------------------------------------------ driver


def _mpirun() -> list[str]:
    beside = Path(sys.executable).parent / "mpirun"
    found = str(beside) if beside.exists() else shutil.which("mpirun")
    if not found:
        raise SystemExit('mpirun not found: pip install "cnnlab[mpi]"')
    cmd = [found, "--oversubscribe"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    return cmd


def run_case(job: dict, workdir: Path, env: dict) -> dict:
    job = dict(job, out=str(workdir / "result.json"))
    Path(job["out"]).unlink(missing_ok=True)
    python = [sys.executable, "-m", "benchmarks.distributed", "--worker", json.dumps(job)]
    cmd = [*_mpirun(), "-np", str(job["ranks"]), *python] if job["ranks"] > 1 else python
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0 or not Path(job["out"]).exists():
        raise SystemExit(f"case {job} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(Path(job["out"]).read_text())


def summarize(values: list[float]) -> dict:
    return {"median": float(np.median(values)), "min": float(min(values)),
            "max": float(max(values)), "all": [round(v, 3) for v in values]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.distributed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="digits,mnist")
    p.add_argument("--ranks", default="1,2", help="rank counts to measure (1 and/or 2)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=40, help="timed steps per case")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--overlap", action="store_true",
                   help="instead: two ranks, reduction after backward vs during it")
    p.add_argument("--cost-model", action="store_true",
                   help="instead: one process on all cores per preset, against a ring "
                        "all-reduce on 8-64 machines")
    p.add_argument("--spin", action="store_true",
                   help="let waiting ranks spin (OMPI_MCA_mpi_yield_when_idle=0) instead of "
                        "yielding their core, cnnlab's default")
    p.add_argument("--json", action="store_true")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0

    import cnnlab

    presets = list(cnnlab.arch.PRESETS) if args.cost_model else args.presets.split(",")
    cores = len(os.sched_getaffinity(0))
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    env["OMPI_MCA_mpi_yield_when_idle"] = "0" if args.spin else "1"
    # (preset, scaling, ranks, step's batch, overlap, threads per rank)
    rank_counts = [int(r) for r in args.ranks.split(",")]
    cases = []
    for preset in presets if args.cost_model else []:
        cases.append((preset, "machine", 1, RECIPE_BATCH[preset], False, cores))
    for preset in [] if args.cost_model else presets:
        b = RECIPE_BATCH[preset]
        if args.overlap:  # several buckets, so that some are ready before backward ends
            cases += [(preset, "weak", 2, 2 * b, False, 1), (preset, "weak", 2, 2 * b, True, 1)]
            continue
        if 1 in rank_counts:
            cases.append((preset, "-", 1, b, False, 1))
        if 2 in rank_counts:
            cases += [(preset, "strong", 2, b, False, 1), (preset, "weak", 2, 2 * b, False, 1)]
        if 1 in rank_counts and cores > 1:  # the same cores as threads of one process
            cases.append((preset, "threads", 1, b, False, cores))
    out = {"machine": machine_info(), "cnnlab": cnnlab.__version__,
           "load_average_before": list(os.getloadavg()), "rounds": args.rounds,
           "steps": args.steps, "cases": [],
           "waiting_ranks": "spin" if args.spin else "yield",
           "bytes": [step_bytes(name) for name in cnnlab.arch.PRESETS]}
    results: dict[tuple, list[dict]] = {c: [] for c in cases}
    with tempfile.TemporaryDirectory(prefix="cnnlab-dist-") as tmp:
        for rnd in range(args.rounds):
            for case in cases:
                preset, scaling, ranks, batch, overlap, threads = case
                job = {"preset": preset, "ranks": ranks, "batch": batch, "overlap": overlap,
                       "steps": args.steps, "warmup": args.warmup,
                       "bucket_mb": OVERLAP_BUCKET_MB if args.overlap else 4.0}
                case_env = dict(env, **{v: str(threads) for v in THREAD_VARS})
                r = run_case(job, Path(tmp), case_env)
                results[case].append(r)
                print(f"[round {rnd + 1}] {preset:<8} {scaling:<7} ranks {ranks} threads "
                      f"{threads} batch {batch:>3}{' overlap' if overlap else ''}: "
                      f"{r['step_ms']:.2f} ms/step, {r['images_per_s']:,.0f} img/s",
                      file=sys.stderr, flush=True)
        if not args.cost_model and not args.overlap and 2 in rank_counts:
            job = {"allreduce": True, "ranks": 2, "reps": 200, "sizes": {
                b["preset"]: b["gradient_allreduce"] for b in out["bytes"]}}
            out["allreduce_ms"] = run_case(job, Path(tmp), dict(env, **{
                v: "1" for v in THREAD_VARS}))
    for case, rs in results.items():
        preset, scaling, ranks, batch, overlap, threads = case
        out["cases"].append({
            "preset": preset, "scaling": scaling, "ranks": ranks, "batch": batch,
            "overlap": overlap, "threads": threads, "buckets": rs[0]["buckets"],
            "step_ms": summarize([r["step_ms"] for r in rs]),
            "reduce_ms": summarize([r["reduce_ms"] for r in rs]),
            "images_per_s": summarize([r["images_per_s"] for r in rs]),
            "cpu_ms": summarize([r["cpu_ms"] for r in rs]),
            "images_per_cpu_s": summarize([r["images_per_cpu_s"] for r in rs]),
        })
    out["load_average_after"] = list(os.getloadavg())
    if args.cost_model:
        out["cost_model"] = cost_model(out)
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(render(out))
    return 0


def cost_model(out: dict) -> list[dict]:
    """Per preset, machine count and link: the step's communication against its compute.

    Besides the gradients (ring all-reduce), a step all-reduces 40 bytes of metrics and
    broadcasts the BatchNorm buffers; MPI sends messages that small along trees (recursive
    doubling, binomial broadcast): counted as 2 log2(N) latencies each.
    """
    sizes = {b["preset"]: b for b in out["bytes"]}
    rows = []
    for c in out["cases"]:
        b = sizes[c["preset"]]
        # The machine's cores all at work: its CPU time over its cores (what the wall time is
        # on an idle machine when the threads scale; on a busy one the wall time also holds
        # waiting for a core), never more than the wall time measured.
        compute = min(c["step_ms"]["median"], c["cpu_ms"]["median"] / c["threads"]) / 1e3
        for n in MACHINES:
            for gbit in LINKS_GBIT:
                grads = ring_allreduce_seconds(b["gradient_allreduce"], n, gbit)
                small = 2 * np.log2(n) * LATENCY_S * (1 + (b["buffer_broadcast"] > 0))
                comm = grads + small
                halving = halving_doubling_seconds(b["gradient_allreduce"], n, gbit) + small
                rows.append({
                    "preset": c["preset"], "batch_per_machine": c["batch"], "machines": n,
                    "gbit": gbit, "gradient_bytes": b["gradient_allreduce"],
                    "compute_ms": compute * 1e3, "comm_ms": comm * 1e3,
                    "latency_share": (2 * (n - 1) * LATENCY_S + small) / comm,
                    "efficiency": compute / (compute + comm),
                    "images_per_s": n * c["batch"] / (compute + comm),
                    "halving_doubling_ms": halving * 1e3,
                    "halving_doubling_efficiency": compute / (compute + halving),
                })
    return rows


def render(out: dict) -> str:
    m = out["machine"]
    lines = [f"machine: {m['cpu']}, {m['usable_cores']} usable cores; numpy {m['numpy']}; "
             f"cnnlab {out['cnnlab']}; waiting ranks {out['waiting_ranks']}",
             f"load average before {out['load_average_before'][0]:.2f}, after "
             f"{out['load_average_after'][0]:.2f}; {out['rounds']} rounds of "
             f"{out['steps']} timed steps; medians over rounds (min-max)", "",
             "| preset | batch | ranks x threads | ms per step | images/s | reduce ms | "
             "CPU ms per step (all ranks) | images per CPU-second |",
             "|---|---|---|---|---|---|---|---|"]
    for c in out["cases"]:
        s, i, r = c["step_ms"], c["images_per_s"], c["reduce_ms"]
        how = f"{c['batch']}" + ("" if c["ranks"] == 1 else
                                 f" ({c['batch'] // c['ranks']} per rank, {c['scaling']})")
        lines.append(
            f"| {c['preset']}{' overlap' if c['overlap'] else ''} | {how} | "
            f"{c['ranks']} x {c['threads']} | "
            f"{s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f}) | {i['median']:,.0f} "
            f"({i['min']:,.0f}-{i['max']:,.0f}) | {r['median']:.3f} | "
            f"{c['cpu_ms']['median']:.2f} | {c['images_per_cpu_s']['median']:,.0f} |")
    alone = out.get("allreduce_ms", {})
    lines += ["", "| preset | parameters | gradient Allreduce | its time here, 2 ranks | metrics | "
              "buffers broadcast | SyncBN all_gather + all_reduce |",
              "|---|---|---|---|---|---|---|"]
    for b in out["bytes"]:
        took = f"{alone[b['preset']]:.3f} ms" if b["preset"] in alone else "-"
        lines.append(f"| {b['preset']} | {b['parameters']:,} | {b['gradient_allreduce']:,} B | "
                     f"{took} | {b['metrics_allreduce']} B | {b['buffer_broadcast']:,} B | "
                     f"{b['syncbn_allgather']:,} + {b['syncbn_allreduce']:,} B |")
    if "cost_model" in out:
        lines += ["", f"ring all-reduce: 2(N-1)/N x bytes / bandwidth + 2(N-1) x "
                  f"{LATENCY_S * 1e6:g} us; compute: the step above (CPU time over the cores), "
                  "one machine",
                  "| preset | gradients | compute ms | N | ring, 10 Gbit/s: comm ms (latency "
                  "share) | efficiency | ring, 25 Gbit/s: comm ms (latency share) | efficiency "
                  "| halving-doubling, 10 / 25 Gbit/s: efficiency |",
                  "|---|---|---|---|---|---|---|---|---|"]
        by_key = {(r["preset"], r["machines"], r["gbit"]): r for r in out["cost_model"]}
        for preset in dict.fromkeys(r["preset"] for r in out["cost_model"]):
            for n in MACHINES:
                a, b = by_key[(preset, n, 10)], by_key[(preset, n, 25)]
                lines.append(
                    f"| {preset} | {a['gradient_bytes'] / 1e6:.2f} MB | {a['compute_ms']:.1f} | "
                    f"{n} | {a['comm_ms']:.2f} ({a['latency_share']:.0%}) | "
                    f"{a['efficiency']:.0%} | {b['comm_ms']:.2f} ({b['latency_share']:.0%}) | "
                    f"{b['efficiency']:.0%} | {a['halving_doubling_efficiency']:.0%} / "
                    f"{b['halving_doubling_efficiency']:.0%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
