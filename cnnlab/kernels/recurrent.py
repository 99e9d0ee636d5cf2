"""The time loops of LSTM and GRU layers, forward and backward, on plain arrays.

A layer's input projection ``x @ W_ih^T + b`` for all time steps is one GEMM done by the
caller; the loops here add the recurrent term ``h @ W_hh^T`` (one GEMM per step for the
whole batch), apply the gate nonlinearities and save what backpropagation through time
needs. Backward walks the steps in reverse and leaves the gradient of every step's gate
pre-activations in one (L, N, G*H) array, so that the weight and input gradients are again
single GEMMs over all steps, done by the caller.

The GEMMs want the gates side by side in a row, (N, G*H); the elementwise work wants each
gate in one block. NumPy runs a ufunc 3-4x slower on a column slice of a matrix (a (64, 256)
gate of a (64, 1024) row block: 8 us against 2 us contiguous, NumPy 2.4), and a step has
20-25 of them. So the activations are kept gate-major, (L, G, N, H): a step's sum of the two
projections is written there in one pass that reads the row layout, every gate operation
then runs on contiguous blocks, and backward writes each step's gate gradients back to the
row layout in one pass before its GEMM. The elementwise work of a step (batch 64, H = 256,
one thread) went from 135 to 118 us forward and 114 to 89 us backward for LSTM, from 123 to
85 and 120 to 81 us for GRU.

Batch rows never interact, so when the pass splits its kernels over the batch (see
:mod:`cnnlab.kernels.parallel`) the batch is cut into contiguous chunks that run the whole
time loop in parallel, one per thread; each step costs a small GEMM and a handful of
elementwise passes per chunk. Otherwise BLAS's own threads share each GEMM.

Memory layout, time-major. With ``reverse`` the steps run from the last position to the
first (the backward direction of a bidirectional layer). ``hs`` has one row more than the
sequence: the initial state sits before the first position processed, so the state a step
starts from is always the neighbouring row:

- forward: ``hs[0] = h0`` and step ``t`` writes ``hs[t + 1]``; the outputs are ``hs[1:]``;
- reverse: ``hs[L] = h0`` and step ``t`` writes ``hs[t]``; the outputs are ``hs[:L]``.

``cs`` (LSTM cell states) follows the same rule.
"""

from __future__ import annotations

import numpy as np

from cnnlab.kernels import parallel

# Below this many multiply-adds in a layer's recurrent GEMMs the loop is not split: handing
# the chunks to threads costs more than it saves.
MIN_SPLIT_WORK = 4_000_000


def positions(steps: int, reverse: bool) -> tuple[range, int]:
    """The steps in processing order, and the offset from a step to the row of ``hs`` it
    writes (the row it starts from is at ``1 - offset``)."""
    return (range(steps - 1, -1, -1), 0) if reverse else (range(steps), 1)


def sigmoid_(x: np.ndarray) -> np.ndarray:
    """The logistic function in place, as ``(1 + tanh(x/2)) / 2``: one transcendental, and
    no overflow for any input (``exp(-x)`` overflows float32 below x = -88)."""
    x *= 0.5
    np.tanh(x, out=x)
    x *= 0.5
    x += 0.5
    return x


def _chunks(n: int, cost: int) -> list[tuple[int, int]]:
    """Contiguous batch chunks, one per thread when the pass splits its kernels over the
    batch (see :mod:`cnnlab.kernels.parallel`: BLAS is then single-threaded) and the work
    is worth it; otherwise one chunk, and BLAS's own threads do the GEMMs."""
    parts = max(1, min(parallel.workers(cost) if cost >= MIN_SPLIT_WORK else 1, n))
    bounds = [n * i // parts for i in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _run(work, n: int, cost: int) -> None:
    parallel.run_parts(lambda ab: work(*ab), _chunks(n, cost))


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``a @ b`` for 2-D arrays, the rows of ``a`` (and of the result) split over the
    threads when the pass splits over the batch and the product is large (the projections
    and weight gradients of a layer: with BLAS single-threaded, one call would leave the
    other cores idle)."""
    if out is None:
        out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    _run(lambda lo, hi: np.matmul(a[lo:hi], b, out=out[lo:hi]), a.shape[0],
         a.shape[0] * a.shape[1] * b.shape[1])
    return out


# _recurrent_term: a step's ``h W_hh^T`` is computed transposed, as ``W_hh h^T`` (G*H, n):
# OpenBLAS runs that shape faster (batch 64, H 256, one thread: 0.37 ms against 0.47 ms; a
# chunk of 32 rows: 0.20 against 0.31), and reading it transposed into the gate-major
# activations costs less than that (30 us at 64 rows, 8 us at 32). The backward GEMM
# ``dG W_hh`` is already the fast shape.


def _gate_view(rows: np.ndarray, gates: int) -> np.ndarray:
    """A (n, G*H) row block seen gate-major, (G, n, H), without copying."""
    n, width = rows.shape
    return rows.reshape(n, gates, width // gates).transpose(1, 0, 2)


# ----- LSTM ----------------------------------------------------------------------------------


def lstm_forward(proj: np.ndarray, w_hh: np.ndarray, hs: np.ndarray, cs: np.ndarray,
                 acts: np.ndarray | None, tanh_c: np.ndarray | None,
                 reverse: bool = False) -> None:
    """Run an LSTM layer over a sequence.

    Args:
        proj: (L, N, 4H) input projections ``x W_ih^T + b_ih + b_hh`` in PyTorch's gate
            order (i, f, g, o); read only.
        w_hh: (4H, H) recurrent weights.
        hs: (L+1, N, H) hidden states, the initial one already in place (see the module
            docstring); the others are written.
        cs: (L+1, N, H) cell states, likewise.
        acts: (L, 4, N, H) receives the gate activations ``sigmoid(i), sigmoid(f), tanh(g),
            sigmoid(o)``, and ``tanh_c`` (L, N, H) receives ``tanh(c_t)``, for backward; both
            None when no gradient is needed (then nothing more is kept).
        reverse: run from the last position to the first.
    """
    steps, n, g4 = proj.shape
    hidden = g4 // 4
    order, ahead = positions(steps, reverse)

    def work(a: int, z: int) -> None:
        rows = z - a
        rec = np.empty((g4, rows), dtype=proj.dtype)
        rec_gates = rec.reshape(4, hidden, rows).transpose(0, 2, 1)
        prod = np.empty((rows, hidden), dtype=proj.dtype)
        scratch = np.empty((4, rows, hidden), dtype=proj.dtype) if acts is None else None
        for t in order:
            np.matmul(w_hh, hs[t + 1 - ahead, a:z].T, out=rec)  # see _recurrent_term
            g = scratch if scratch is not None else acts[t, :, a:z]
            np.add(_gate_view(proj[t, a:z], 4), rec_gates, out=g)
            sigmoid_(g[:2])
            np.tanh(g[2], out=g[2])
            sigmoid_(g[3])
            c = cs[t + ahead, a:z]
            np.multiply(g[1], cs[t + 1 - ahead, a:z], out=c)
            np.multiply(g[0], g[2], out=prod)
            c += prod
            tc = prod if tanh_c is None else tanh_c[t, a:z]
            np.tanh(c, out=tc)
            np.multiply(g[3], tc, out=hs[t + ahead, a:z])

    _run(work, n, steps * n * g4 * hidden)


def lstm_backward(dgates_out: np.ndarray, acts: np.ndarray, w_hh: np.ndarray,
                  cs: np.ndarray, tanh_c: np.ndarray, dhs: np.ndarray, dc_last: np.ndarray,
                  reverse: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Backpropagation through time for :func:`lstm_forward`.

    Args:
        dgates_out: (L, N, 4H) receives the gradient of every step's gate pre-activations,
            in the row layout of ``proj`` (it may be ``proj`` itself).
        acts, cs, tanh_c: what :func:`lstm_forward` saved; ``acts`` is overwritten.
        w_hh: (4H, H) recurrent weights.
        dhs: (L, N, H) gradient of the loss with respect to each step's output ``h_t``
            (in position order; for the last step it includes ``h_n``'s gradient).
        dc_last: (N, H) gradient with respect to the final cell state ``c_n``.
        reverse: as given to :func:`lstm_forward`.

    Returns:
        The gradients with respect to ``h0`` and ``c0``, each (N, H).
    """
    steps, n, g4 = dgates_out.shape
    hidden = g4 // 4
    order, ahead = positions(steps, reverse)
    dtype = acts.dtype
    dh0 = np.empty((n, hidden), dtype=dtype)
    dc0 = np.array(dc_last, dtype=dtype, copy=True)

    def work(a: int, z: int) -> None:
        rows = z - a
        dh = np.zeros((rows, hidden), dtype=dtype)  # gradient from the later steps
        dc = dc0[a:z]
        t1 = np.empty((rows, hidden), dtype=dtype)
        t2 = np.empty((rows, hidden), dtype=dtype)
        for t in reversed(order):
            i, f, g, o = acts[t, :, a:z]  # each becomes its pre-activation's gradient
            tc = tanh_c[t, a:z]
            dh += dhs[t, a:z]
            # dc += dh * o * (1 - tanh(c)^2)
            np.multiply(tc, tc, out=t1)
            np.subtract(1, t1, out=t1)
            t1 *= o
            t1 *= dh
            dc += t1
            # d o = dh * tanh(c) * o (1 - o)
            np.subtract(1, o, out=t2)
            o *= t2
            o *= tc
            o *= dh
            # d g = dc * i * (1 - g^2);  d i = dc * g * i (1 - i)
            np.multiply(dc, g, out=t1)
            np.multiply(dc, i, out=t2)
            np.multiply(g, g, out=g)
            np.subtract(1, g, out=g)
            g *= t2
            np.subtract(1, i, out=t2)
            i *= t2
            i *= t1
            # d f = dc * c_prev * f (1 - f); then dc flows on to c_prev through f
            np.multiply(dc, cs[t + 1 - ahead, a:z], out=t1)
            dc *= f
            np.subtract(1, f, out=t2)
            f *= t2
            f *= t1
            d = dgates_out[t, a:z]
            np.copyto(_gate_view(d, 4), acts[t, :, a:z])
            np.matmul(d, w_hh, out=dh)
        dh0[a:z] = dh

    _run(work, n, steps * n * g4 * hidden)
    return dh0, dc0


# ----- GRU -----------------------------------------------------------------------------------


def gru_forward(proj: np.ndarray, w_hh: np.ndarray, b_hn: np.ndarray | None, hs: np.ndarray,
                acts: np.ndarray | None, hn: np.ndarray | None, reverse: bool = False) -> None:
    """Run a GRU layer over a sequence.

    Args:
        proj: (L, N, 3H) input projections in PyTorch's gate order (r, z, n): ``x W_ir^T +
            b_ir + b_hr``, ``x W_iz^T + b_iz + b_hz`` and ``x W_in^T + b_in``; read only.
        w_hh: (3H, H) recurrent weights.
        b_hn: (H,) the recurrent bias of the candidate ``n`` (it sits inside ``r * (...)``,
            so it cannot be folded into ``proj``), or None.
        hs: (L+1, N, H) hidden states, the initial one in place (see the module docstring).
        acts: (L, 3, N, H) receives the activations ``r``, ``z`` and ``n = tanh(x W_in^T +
            b_in + r * (h W_hn^T + b_hn))``, and ``hn`` (L, N, H) receives ``h W_hn^T +
            b_hn``, for backward; both None when no gradient is needed.
        reverse: run from the last position to the first.
    """
    steps, n, g3 = proj.shape
    hidden = g3 // 3
    order, ahead = positions(steps, reverse)

    def work(a: int, z: int) -> None:
        rows = z - a
        rec = np.empty((g3, rows), dtype=proj.dtype)
        r3 = rec.reshape(3, hidden, rows).transpose(0, 2, 1)
        diff = np.empty((rows, hidden), dtype=proj.dtype)
        scratch = None
        if acts is None:
            scratch = (np.empty((3, rows, hidden), dtype=proj.dtype),
                       np.empty((rows, hidden), dtype=proj.dtype))
        for t in order:
            h_prev = hs[t + 1 - ahead, a:z]
            np.matmul(w_hh, h_prev.T, out=rec)  # see _recurrent_term
            g, rec_n = scratch if scratch is not None else (acts[t, :, a:z], hn[t, a:z])
            p = _gate_view(proj[t, a:z], 3)
            np.add(p[:2], r3[:2], out=g[:2])
            sigmoid_(g[:2])
            if b_hn is not None:
                np.add(r3[2], b_hn, out=rec_n)
            else:
                np.copyto(rec_n, r3[2])
            np.multiply(g[0], rec_n, out=g[2])
            g[2] += p[2]
            np.tanh(g[2], out=g[2])
            # h = n + z * (h_prev - n)
            np.subtract(h_prev, g[2], out=diff)
            diff *= g[1]
            np.add(g[2], diff, out=hs[t + ahead, a:z])

    _run(work, n, steps * n * g3 * hidden)


def gru_backward(dgates_out: np.ndarray, drec_out: np.ndarray, acts: np.ndarray,
                 w_hh: np.ndarray, hs: np.ndarray, hn: np.ndarray, dhs: np.ndarray,
                 reverse: bool = False) -> np.ndarray:
    """Backpropagation through time for :func:`gru_forward`.

    Args:
        dgates_out: (L, N, 3H) receives the gradient of the input projections, in the row
            layout of ``proj`` (it may be ``proj`` itself).
        drec_out: (L, N, 3H) receives the gradient of the recurrent projections ``h W_hh^T
            + b_hh`` (equal to ``dgates_out`` in the r and z blocks; ``r`` times it in n).
        acts, hs, hn: what :func:`gru_forward` saved; ``acts`` and ``hn`` are overwritten.
        w_hh: (3H, H) recurrent weights.
        dhs: (L, N, H) gradient of the loss with respect to each step's output (position
            order; the last step's includes ``h_n``'s gradient).
        reverse: as given to :func:`gru_forward`.

    Returns:
        The gradient with respect to ``h0``, (N, H).
    """
    steps, n, g3 = dgates_out.shape
    hidden = g3 // 3
    order, ahead = positions(steps, reverse)
    dtype = acts.dtype
    dh0 = np.empty((n, hidden), dtype=dtype)

    def work(a: int, z: int) -> None:
        rows = z - a
        dh = np.zeros((rows, hidden), dtype=dtype)
        t1 = np.empty((rows, hidden), dtype=dtype)
        t2 = np.empty((rows, hidden), dtype=dtype)
        for t in reversed(order):
            g = acts[t, :, a:z]
            r, zg, cand = g
            rec_n = hn[t, a:z]
            dh += dhs[t, a:z]
            # d n = dh * (1 - z) * (1 - n^2)
            np.multiply(cand, cand, out=t1)
            np.subtract(1, t1, out=t1)
            np.subtract(1, zg, out=t2)
            t2 *= dh
            t1 *= t2
            # d z = dh * (h_prev - n) * z (1 - z); h_prev also receives dh * z directly
            np.subtract(hs[t + 1 - ahead, a:z], cand, out=t2)
            t2 *= dh
            dh *= zg
            np.subtract(1, zg, out=cand)
            zg *= cand
            zg *= t2
            np.copyto(cand, t1)
            # d r = d n * (h W_hn^T + b_hn) * r (1 - r); the recurrent n block gets d n * r
            np.subtract(1, r, out=t2)
            t2 *= r
            t2 *= rec_n
            np.multiply(t1, r, out=rec_n)
            np.multiply(t2, t1, out=r)
            np.copyto(_gate_view(dgates_out[t, a:z], 3), g)
            dr = _gate_view(drec_out[t, a:z], 3)
            np.copyto(dr[:2], g[:2])
            np.copyto(dr[2], rec_n)
            np.matmul(drec_out[t, a:z], w_hh, out=t1)
            dh += t1
        dh0[a:z] = dh

    _run(work, n, steps * n * g3 * hidden)
    return dh0
