"""The time loops of LSTM and GRU layers, forward and backward, on plain arrays.

A layer's input projection ``x @ W_ih^T + b`` for all time steps is one GEMM done by the
caller; the loops here add the recurrent term ``h @ W_hh^T`` (one GEMM per step for the
whole batch), apply the gate nonlinearities in place and save what backpropagation through
time needs. Backward walks the steps in reverse and leaves the gradient of every step's
gate pre-activations in one (L, N, G*H) array, so that the weight and input gradients are
again single GEMMs over all steps, done by the caller.

Batch rows never interact, so a batch is split into contiguous chunks that run the whole
time loop in parallel (one chunk per thread, see :mod:`cnnlab.kernels.parallel`); each step
costs a small GEMM and a handful of in-place elementwise passes per chunk.

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
    """Contiguous batch chunks, one per thread when the work is worth splitting and BLAS is
    known to be single-threaded (inside a Module call or a backward pass)."""
    parts = 1
    if cost >= MIN_SPLIT_WORK and parallel.single_threaded_blas.entered:
        parts = max(1, min(parallel.workers(cost), n))
    bounds = [n * i // parts for i in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _run(work, n: int, cost: int) -> None:
    parallel.run_parts(lambda ab: work(*ab), _chunks(n, cost))


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``a @ b`` for 2-D arrays, the rows of ``a`` (and of the result) split over the
    threads when the product is large (the projections and weight gradients of a layer:
    one BLAS thread would leave the other cores idle for most of a step)."""
    if out is None:
        out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    _run(lambda lo, hi: np.matmul(a[lo:hi], b, out=out[lo:hi]), a.shape[0],
         a.shape[0] * a.shape[1] * b.shape[1])
    return out


# ----- LSTM ----------------------------------------------------------------------------------


def lstm_forward(gates: np.ndarray, w_hh: np.ndarray, hs: np.ndarray, cs: np.ndarray,
                 tanh_c: np.ndarray | None, reverse: bool = False) -> None:
    """Run an LSTM layer over a sequence, in place.

    Args:
        gates: (L, N, 4H) input projections ``x W_ih^T + b_ih + b_hh`` in PyTorch's gate
            order (i, f, g, o); overwritten with the gate activations
            ``sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)``.
        w_hh: (4H, H) recurrent weights.
        hs: (L+1, N, H) hidden states, the initial one already in place (see the module
            docstring); the others are written.
        cs: (L+1, N, H) cell states, likewise.
        tanh_c: (L, N, H) receives ``tanh(c_t)`` for backward, or None when no gradient is
            needed (then nothing more is kept).
        reverse: run from the last position to the first.
    """
    steps, n, g4 = gates.shape
    hidden = g4 // 4
    order, ahead = positions(steps, reverse)
    w_t = w_hh.T

    def work(a: int, z: int) -> None:
        rec = np.empty((z - a, g4), dtype=gates.dtype)
        prod = np.empty((z - a, hidden), dtype=gates.dtype)
        scratch = prod if tanh_c is None else None
        for t in order:
            g = gates[t, a:z]
            np.matmul(hs[t + 1 - ahead, a:z], w_t, out=rec)
            g += rec
            sigmoid_(g[:, :2 * hidden])
            np.tanh(g[:, 2 * hidden:3 * hidden], out=g[:, 2 * hidden:3 * hidden])
            sigmoid_(g[:, 3 * hidden:])
            i, f = g[:, :hidden], g[:, hidden:2 * hidden]
            gg, o = g[:, 2 * hidden:3 * hidden], g[:, 3 * hidden:]
            c = cs[t + ahead, a:z]
            np.multiply(f, cs[t + 1 - ahead, a:z], out=c)
            np.multiply(i, gg, out=prod)
            c += prod
            tc = scratch if scratch is not None else tanh_c[t, a:z]
            np.tanh(c, out=tc)
            np.multiply(o, tc, out=hs[t + ahead, a:z])

    _run(work, n, steps * n * g4 * hidden)


def lstm_backward(dgates_out: np.ndarray, gates: np.ndarray, w_hh: np.ndarray,
                  cs: np.ndarray, tanh_c: np.ndarray, dhs: np.ndarray, dc_last: np.ndarray,
                  reverse: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Backpropagation through time for :func:`lstm_forward`.

    Args:
        dgates_out: (L, N, 4H) receives the gradient of every step's gate pre-activations
            (it may be ``gates`` itself: each step reads its gates before writing there).
        gates, cs, tanh_c: what :func:`lstm_forward` saved.
        w_hh: (4H, H) recurrent weights.
        dhs: (L, N, H) gradient of the loss with respect to each step's output ``h_t``
            (in position order; for the last step it includes ``h_n``'s gradient).
        dc_last: (N, H) gradient with respect to the final cell state ``c_n``.
        reverse: as given to :func:`lstm_forward`.

    Returns:
        The gradients with respect to ``h0`` and ``c0``, each (N, H).
    """
    steps, n, g4 = gates.shape
    hidden = g4 // 4
    order, ahead = positions(steps, reverse)
    dh0 = np.empty((n, hidden), dtype=gates.dtype)
    dc0 = np.array(dc_last, dtype=gates.dtype, copy=True)

    def work(a: int, z: int) -> None:
        rows = z - a
        dh = np.zeros((rows, hidden), dtype=gates.dtype)  # gradient from the later steps
        dc = dc0[a:z]
        t1 = np.empty((rows, hidden), dtype=gates.dtype)
        t2 = np.empty((rows, hidden), dtype=gates.dtype)
        for t in reversed(order):
            g = gates[t, a:z]
            i, f = g[:, :hidden], g[:, hidden:2 * hidden]
            gg, o = g[:, 2 * hidden:3 * hidden], g[:, 3 * hidden:]
            d = dgates_out[t, a:z]
            tc = tanh_c[t, a:z]
            dh += dhs[t, a:z]
            # dc += dh * o * (1 - tanh(c)^2)
            np.multiply(tc, tc, out=t1)
            np.subtract(1, t1, out=t1)
            t1 *= o
            t1 *= dh
            dc += t1
            # d o_pre = dh * tanh(c) * o (1 - o)
            np.multiply(dh, tc, out=t1)
            np.subtract(1, o, out=t2)
            t2 *= o
            np.multiply(t1, t2, out=d[:, 3 * hidden:])
            # d g_pre = dc * i * (1 - g^2)
            np.multiply(gg, gg, out=t2)
            np.subtract(1, t2, out=t2)
            t2 *= i
            np.multiply(dc, t2, out=t1)  # keep: writing d[:, 2H:3H] would overwrite g
            # d i_pre = dc * g * i (1 - i)
            np.subtract(1, i, out=t2)
            t2 *= i
            t2 *= gg
            d[:, 2 * hidden:3 * hidden] = t1
            np.multiply(dc, t2, out=d[:, :hidden])
            # d f_pre = dc * c_prev * f (1 - f); then dc flows on to c_prev through f
            np.subtract(1, f, out=t2)
            t2 *= f
            t2 *= cs[t + 1 - ahead, a:z]
            t2 *= dc
            dc *= f
            d[:, hidden:2 * hidden] = t2
            np.matmul(d, w_hh, out=dh)
        dh0[a:z] = dh

    _run(work, n, steps * n * g4 * hidden)
    return dh0, dc0


# ----- GRU -----------------------------------------------------------------------------------


def gru_forward(gates: np.ndarray, w_hh: np.ndarray, b_hn: np.ndarray | None, hs: np.ndarray,
                hn: np.ndarray | None, reverse: bool = False) -> None:
    """Run a GRU layer over a sequence, in place.

    Args:
        gates: (L, N, 3H) input projections in PyTorch's gate order (r, z, n): ``x W_ir^T +
            b_ir + b_hr``, ``x W_iz^T + b_iz + b_hz`` and ``x W_in^T + b_in``; overwritten
            with the activations ``r``, ``z`` and ``n = tanh(x W_in^T + b_in + r * (h W_hn^T
            + b_hn))``.
        w_hh: (3H, H) recurrent weights.
        b_hn: (H,) the recurrent bias of the candidate ``n`` (it sits inside ``r * (...)``,
            so it cannot be folded into ``gates``), or None.
        hs: (L+1, N, H) hidden states, the initial one in place (see the module docstring).
        hn: (L, N, H) receives ``h W_hn^T + b_hn`` for backward, or None when no gradient is
            needed.
        reverse: run from the last position to the first.
    """
    steps, n, g3 = gates.shape
    hidden = g3 // 3
    order, ahead = positions(steps, reverse)
    w_t = w_hh.T

    def work(a: int, z: int) -> None:
        rec = np.empty((z - a, g3), dtype=gates.dtype)
        diff = np.empty((z - a, hidden), dtype=gates.dtype)
        for t in order:
            g = gates[t, a:z]
            h_prev = hs[t + 1 - ahead, a:z]
            np.matmul(h_prev, w_t, out=rec)
            rz, cand = g[:, :2 * hidden], g[:, 2 * hidden:]
            rz += rec[:, :2 * hidden]
            sigmoid_(rz)
            rec_n = rec[:, 2 * hidden:] if hn is None else hn[t, a:z]
            if b_hn is not None:
                np.add(rec[:, 2 * hidden:], b_hn, out=rec_n)
            elif hn is not None:
                rec_n[...] = rec[:, 2 * hidden:]
            np.multiply(g[:, :hidden], rec_n, out=diff)
            cand += diff
            np.tanh(cand, out=cand)
            # h = n + z * (h_prev - n)
            np.subtract(h_prev, cand, out=diff)
            diff *= g[:, hidden:2 * hidden]
            np.add(cand, diff, out=hs[t + ahead, a:z])

    _run(work, n, steps * n * g3 * hidden)


def gru_backward(dgates_out: np.ndarray, drec_out: np.ndarray, gates: np.ndarray,
                 w_hh: np.ndarray, hs: np.ndarray, hn: np.ndarray, dhs: np.ndarray,
                 reverse: bool = False) -> np.ndarray:
    """Backpropagation through time for :func:`gru_forward`.

    Args:
        dgates_out: (L, N, 3H) receives the gradient of the input projections (may be
            ``gates`` itself).
        drec_out: (L, N, 3H) receives the gradient of the recurrent projections ``h W_hh^T
            + b_hh`` (equal to ``dgates_out`` in the r and z blocks; ``r`` times it in n).
        gates, hs, hn: what :func:`gru_forward` saved.
        w_hh: (3H, H) recurrent weights.
        dhs: (L, N, H) gradient of the loss with respect to each step's output (position
            order; the last step's includes ``h_n``'s gradient).
        reverse: as given to :func:`gru_forward`.

    Returns:
        The gradient with respect to ``h0``, (N, H).
    """
    steps, n, g3 = gates.shape
    hidden = g3 // 3
    order, ahead = positions(steps, reverse)
    dh0 = np.empty((n, hidden), dtype=gates.dtype)

    def work(a: int, z: int) -> None:
        rows = z - a
        dh = np.zeros((rows, hidden), dtype=gates.dtype)
        t1 = np.empty((rows, hidden), dtype=gates.dtype)
        t2 = np.empty((rows, hidden), dtype=gates.dtype)
        for t in reversed(order):
            g = gates[t, a:z]
            r, zg, cand = g[:, :hidden], g[:, hidden:2 * hidden], g[:, 2 * hidden:]
            h_prev = hs[t + 1 - ahead, a:z]
            d, dr = dgates_out[t, a:z], drec_out[t, a:z]
            dh += dhs[t, a:z]
            # d n_pre = dh * (1 - z) * (1 - n^2)
            np.multiply(cand, cand, out=t1)
            np.subtract(1, t1, out=t1)
            np.subtract(1, zg, out=t2)
            t2 *= dh
            t1 *= t2
            # d z_pre = dh * (h_prev - n) * z (1 - z)
            np.subtract(h_prev, cand, out=t2)
            t2 *= dh
            d[:, 2 * hidden:] = t1  # n is no longer needed
            np.subtract(1, zg, out=dr[:, hidden:2 * hidden])
            dr[:, hidden:2 * hidden] *= zg
            dr[:, hidden:2 * hidden] *= t2
            # d r_pre = d n_pre * (h W_hn^T + b_hn) * r (1 - r)
            np.subtract(1, r, out=t2)
            t2 *= r
            t2 *= hn[t, a:z]
            t2 *= t1
            np.multiply(t1, r, out=dr[:, 2 * hidden:])
            dr[:, :hidden] = t2
            # h_prev receives dh * z directly, and the rest through W_hh
            dh *= zg
            d[:, :2 * hidden] = dr[:, :2 * hidden]
            np.matmul(dr, w_hh, out=t1)
            dh += t1
        dh0[a:z] = dh

    _run(work, n, steps * n * g3 * hidden)
    return dh0
