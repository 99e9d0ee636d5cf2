"""Turns the driver's result dict into Markdown tables a person can read (and paste)."""

from __future__ import annotations

# Other processes using more than this many cores (beyond those the run leaves idle) during
# a timing make it suspect.
DISTURBED_CORES = 0.2

COLUMNS = [("cnnlab", "cnnlab"), ("torch_nchw", "torch NCHW"),
           ("torch_channels_last", "torch channels_last"), ("textbook", "textbook NumPy")]


def fmt_ms(v: float) -> str:
    """Three significant digits, no exponent: 0.123, 1.23, 12.3, 123."""
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def fmt_ratio(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def _cell(r: dict | None) -> str:
    if r is None:
        return "—"
    if "error" in r:
        return "error"
    return f"{fmt_ms(r['median_ms'])} ({fmt_ms(r['min_ms'])}–{fmt_ms(r['max_ms'])})"


def _cpu_cell(r: dict | None) -> str:
    from benchmarks.run import lowest_cpu_ms

    value = None if r is None or "error" in r else lowest_cpu_ms(r)
    return "—" if value is None else fmt_ms(value)


def threads_word(out: dict) -> str:
    return "one thread" if out["threads"] == 1 else \
        f"{out['threads']} threads (spinning threads count too)"


def _mem_cell(r: dict | None) -> str:
    if r is None:
        return "—"
    if "error" in r:
        return "error"
    return f"{r['peak_rss_mib']:.0f} (+{r['step_rss_mib']:.0f})"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [
        line(r) for r in rows
    ]


def header_lines(out: dict) -> list[str]:
    m = out["machine"]
    env = m["env"]
    all_results = [r for row in out.get("results", []) for r in row["frameworks"].values()]
    blas = "unknown"
    for r in all_results + out.get("profile", {}).get("workers", []):
        for pool in r.get("threadpools", []):
            if pool.get("internal_api") in ("openblas", "mkl", "blis"):
                blas = (f"{pool['internal_api']} {pool.get('version')} "
                        f"({pool.get('architecture') or '?'} kernels, "
                        f"{pool.get('threading_layer') or '?'})")
                break
        if blas != "unknown":
            break
    torch_extra = ""
    for r in all_results:
        if "torch_cpu_capability" in r:
            torch_extra = f" (CPU capability {r['torch_cpu_capability']}, oneDNN " \
                          f"{'on' if r.get('torch_mkldnn') else 'off'})"
            break
    malloc = ", ".join(f"{k}={v}" for k, v in env.items() if k.startswith("MALLOC_")) or \
        "none set"
    threads = out["threads"]
    lines = [
        f"machine:  {m['cpu']}, {m['usable_cores']} usable cores of {m['cores']} "
        f"({' '.join(m['cpu_flags']) or 'no AVX2'}), {m['platform']}",
        f"software: Python {m['python']}, NumPy {m['numpy']} with {blas}, "
        f"torch {m['torch'] or 'not installed'}{torch_extra}",
        f"threads:  {threads} in every framework (OMP/OPENBLAS/MKL/CNNLAB_NUM_THREADS="
        f"{threads}, torch.set_num_threads, cnnlab.set_num_threads); each in its own process",
        f"env:      OPENBLAS_CORETYPE={env.get('OPENBLAS_CORETYPE') or 'unset'}, "
        f"OPENBLAS_L2_SIZE={env.get('OPENBLAS_L2_SIZE') or 'unset'}; MALLOC_*: {malloc}",
        "dtype:    float32 everywhere; same initial weights and batch in every framework",
    ]
    if "load_average_before" in out:
        # The load after the run counts the run's own processes, so only the load before
        # says whether other work was there; each case also measures it while timed.
        before = out["load_average_before"][0]
        after = out.get("load_average_after", [before])[0]
        busy = before > m["usable_cores"] - 0.5
        lines.append(f"load:     1-min load average {before:.2f} before the run ({after:.2f} "
                     f"after, this run's own processes included)"
                     + (" — OTHER WORK SHARED THE CPU: timings are unreliable" if busy else ""))
    if out.get("quick"):
        lines.insert(0, "QUICK SMOKE RUN: too few repetitions for the numbers to mean much.")
    return lines


def render(out: dict) -> str:
    """The whole report: header, timing table, memory table, correctness, errors."""
    if "profile" in out:
        from benchmarks.opprofile import render_profile

        return "\n".join(header_lines(out) + ["", render_profile(out["profile"])])
    lines = header_lines(out)
    rows, mem_rows, problems = [], [], []
    # Other processes may use the cores this run leaves idle without disturbing it.
    spare = max(0, out["machine"]["usable_cores"] - out["threads"])
    for row in out["results"]:
        fws = row["frameworks"]
        label = f"{row['name']}"
        rows.append([label] + [_cell(fws.get(k)) for k, _ in COLUMNS] + [
            fmt_ratio(row["torch_over_cnnlab"]), fmt_ratio(row["cnnlab_speedup_over_textbook"])
        ])
        if row["task"] == "train":
            mem_rows.append([label] + [_mem_cell(fws.get(k)) for k, _ in COLUMNS])
        for fw, r in fws.items():
            if "error" in r:
                problems.append(f"- {row['name']} / {fw}: {r['error']}")
            elif (r.get("other_cpu_cores") or 0) > spare + DISTURBED_CORES:
                problems.append(f"- {row['name']} / {fw}: other processes kept "
                                f"{r['other_cpu_cores']:.1f} cores busy during the timing")
        check = row.get("check") or {}
        for fw, c in check.get("frameworks", {}).items():
            if not c["ok"]:
                problems.append(f"- {row['name']} / {fw}: result differs from "
                                f"{check['reference']} (relative error {c['max_rel_err']:.2e})")
    rounds = out.get("rounds", 1)
    how = "" if rounds == 1 else f"; best of {rounds} interleaved rounds"
    lines += ["", f"Median ms per call (min–max over the timed repetitions{how}):", ""]
    lines += _table(["workload"] + [t for _, t in COLUMNS]
                    + ["torch/cnnlab", "cnnlab vs textbook"], rows)
    lines += ["", "torch/cnnlab = median of the faster torch layout / median of cnnlab "
              "(1.00 = as fast as torch, higher = cnnlab faster).",
              "cnnlab vs textbook = textbook median / cnnlab median."]
    cpu_rows = [[row["name"]] + [_cpu_cell(row["frameworks"].get(k)) for k, _ in COLUMNS]
                + [fmt_ratio(row.get("torch_over_cnnlab_cpu"))]
                for row in out["results"] if row.get("torch_over_cnnlab_cpu")]
    if cpu_rows:
        lines += ["", "CPU ms per call of each worker process (median; the lowest over rounds). "
                  f"With {threads_word(out)} this is the work itself, little changed by other "
                  "processes taking turns on the cores:", ""]
        lines += _table(["workload"] + [t for _, t in COLUMNS] + ["torch/cnnlab (CPU)"],
                        cpu_rows)
    if mem_rows:
        lines += ["", "Peak RSS of the training-step process, MiB (in parentheses: growth "
                  "after setup, i.e. what the steps themselves added):", ""]
        lines += _table(["workload"] + [t for _, t in COLUMNS], mem_rows)
    worst = [(c["max_rel_err"], row["name"], fw) for row in out["results"]
             for fw, c in (row.get("check") or {}).get("frameworks", {}).items()
             if fw != row["check"]["reference"]]
    if worst:
        ref = out["results"][0]["check"]["reference"]
        per_fw: dict[str, tuple[float, str]] = {}
        for err, name, fw in worst:
            per_fw[fw] = max(per_fw.get(fw, (err, name)), (err, name))
        per_framework = ", ".join(f"{fw} {err:.1e} ({name})"
                                  for fw, (err, name) in per_fw.items())
        lines += ["", f"correctness: first-step loss and gradients (logits for inference) "
                  f"compared with {ref}; worst relative error per framework: "
                  f"{per_framework}; tolerance "
                  f"{out['results'][0]['check']['tolerance']:.0e}."]
    if problems:
        lines += ["", "PROBLEMS:"] + problems
    lines += ["", f"total wall time {out['wall_s']:.0f} s"]
    return "\n".join(lines)
