"""Sequence ops: embedding lookup and whole-sequence LSTM and GRU layers.

A recurrent layer over a sequence is ONE op, not a graph of per-step ops: its forward runs
the input projection of every time step as one GEMM and then the time loop
(:mod:`cnnlab.kernels.recurrent`), saving the gate activations; its backward is
backpropagation through time, written by hand, ending in one GEMM each for the input, weight
and bias gradients. An op returns a single array, so a layer's results are packed in one
(see :func:`lstm_layer`) and handed out as views.
"""

from __future__ import annotations

import numpy as np

from cnnlab.kernels import embedding as embedding_kernel
from cnnlab.kernels import recurrent
from cnnlab.tensor import Function, Tensor


def _gemm_rows(a: np.ndarray) -> np.ndarray:
    """``a`` (L, N, K) as a C-contiguous (L*N, K) matrix (a copy only if it is not one)."""
    return np.ascontiguousarray(a).reshape(-1, a.shape[-1])


def _used_once(ctx: Function) -> None:
    """The recurrent ops overwrite their saved activations with gradients during backward,
    so a graph can be walked back through them only once."""
    if getattr(ctx, "_done", False):
        raise RuntimeError(
            f"{type(ctx).__name__}: backward through this recurrent layer ran twice, but its "
            "saved activations were consumed the first time; run the forward pass again "
            "before a second backward")
    ctx._done = True


class LSTMLayer(Function):
    """One direction of one LSTM layer over a whole sequence.

    Output: (L+2, N, H) = the hidden states with the initial one in place (see
    :mod:`cnnlab.kernels.recurrent`), then the final cell state ``c_n``.
    """

    def forward(self, x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, *, reverse=False):
        steps, n, _ = x.shape
        hidden = w_hh.shape[1]
        x2 = _gemm_rows(x)
        proj = recurrent.matmul(x2, w_ih.T).reshape(steps, n, 4 * hidden)
        if b_ih is not None:
            proj += b_ih + b_hh
        packed = np.empty((steps + 2, n, hidden), dtype=x.dtype)
        hs = packed[:steps + 1]
        cs = np.empty((steps + 1, n, hidden), dtype=x.dtype)
        first = steps if reverse else 0
        hs[first], cs[first] = h0, c0
        acts = tanh_c = None
        if any(self.needs_grad):
            acts = np.empty((steps, 4, n, hidden), dtype=x.dtype)
            tanh_c = np.empty((steps, n, hidden), dtype=x.dtype)
        recurrent.lstm_forward(proj, w_hh, hs, cs, acts, tanh_c, reverse)
        packed[steps + 1] = cs[0 if reverse else steps]
        if acts is not None:
            self.x2, self.w_ih, self.w_hh = x2, w_ih, w_hh
            self.proj, self.acts, self.cs, self.tanh_c = proj, acts, cs, tanh_c
            self.packed, self.reverse, self.bias = packed, reverse, b_ih is not None
        return packed

    def backward(self, grad):
        _used_once(self)
        steps, n, g4 = self.proj.shape
        first = steps if self.reverse else 0
        outputs = slice(0, steps) if self.reverse else slice(1, steps + 1)
        previous = slice(1, steps + 1) if self.reverse else slice(0, steps)
        # The projections are dead after forward: their buffer receives the gate gradients.
        dh0, dc0 = recurrent.lstm_backward(self.proj, self.acts, self.w_hh, self.cs,
                                           self.tanh_c, grad[outputs], grad[steps + 1],
                                           self.reverse)
        dh0 += grad[first]  # the packed copy of h0 (no layer reads it; exact all the same)
        return self._weight_grads(self.proj.reshape(steps * n, g4), self.packed[previous],
                                  dh0, dc0)

    def _weight_grads(self, dg: np.ndarray, h_prev: np.ndarray, dh0, dc0):
        need = self.needs_grad
        mm = recurrent.matmul
        dx = mm(dg, self.w_ih).reshape(-1, dh0.shape[0], self.x2.shape[1]) if need[0] else None
        dw_ih = mm(dg.T, self.x2) if need[3] else None
        dw_hh = mm(dg.T, _gemm_rows(h_prev)) if need[4] else None
        grads = [dx, dh0 if need[1] else None, dc0 if need[2] else None, dw_ih, dw_hh]
        if self.bias:
            db = np.ones(dg.shape[0], dtype=dg.dtype) @ dg if need[5] or need[6] else None
            grads += [db if need[5] else None, db.copy() if need[6] else None]
        return tuple(grads)


class GRULayer(Function):
    """One direction of one GRU layer over a whole sequence.

    Output: (L+1, N, H), the hidden states with the initial one in place (see
    :mod:`cnnlab.kernels.recurrent`).
    """

    def forward(self, x, h0, w_ih, w_hh, b_ih=None, b_hh=None, *, reverse=False):
        steps, n, _ = x.shape
        hidden = w_hh.shape[1]
        x2 = _gemm_rows(x)
        proj = recurrent.matmul(x2, w_ih.T).reshape(steps, n, 3 * hidden)
        b_hn = None
        if b_ih is not None:
            proj += b_ih
            proj[..., :2 * hidden] += b_hh[:2 * hidden]
            b_hn = b_hh[2 * hidden:]
        hs = np.empty((steps + 1, n, hidden), dtype=x.dtype)
        hs[steps if reverse else 0] = h0
        acts = hn = None
        if any(self.needs_grad):
            acts = np.empty((steps, 3, n, hidden), dtype=x.dtype)
            hn = np.empty((steps, n, hidden), dtype=x.dtype)
        recurrent.gru_forward(proj, w_hh, b_hn, hs, acts, hn, reverse)
        if acts is not None:
            self.x2, self.w_ih, self.w_hh = x2, w_ih, w_hh
            self.proj, self.acts, self.hs, self.hn = proj, acts, hs, hn
            self.reverse, self.bias = reverse, b_ih is not None
        return hs

    def backward(self, grad):
        _used_once(self)
        steps, n, g3 = self.proj.shape
        first = steps if self.reverse else 0
        outputs = slice(0, steps) if self.reverse else slice(1, steps + 1)
        previous = slice(1, steps + 1) if self.reverse else slice(0, steps)
        drec = np.empty_like(self.proj)
        dh0 = recurrent.gru_backward(self.proj, drec, self.acts, self.w_hh, self.hs,
                                     self.hn, grad[outputs], self.reverse)
        dh0 += grad[first]
        need = self.needs_grad
        dg = self.proj.reshape(steps * n, g3)
        dr = drec.reshape(steps * n, g3)
        mm = recurrent.matmul
        dx = mm(dg, self.w_ih).reshape(steps, n, self.x2.shape[1]) if need[0] else None
        dw_ih = mm(dg.T, self.x2) if need[2] else None
        dw_hh = mm(dr.T, _gemm_rows(self.hs[previous])) if need[3] else None
        grads = [dx, dh0 if need[1] else None, dw_ih, dw_hh]
        if self.bias:
            ones = np.ones(dg.shape[0], dtype=dg.dtype)
            grads += [ones @ dg if need[4] else None, ones @ dr if need[5] else None]
        return tuple(grads)


class Embedding(Function):
    def forward(self, weight, *, indices, padding_idx):
        self.indices, self.padding_idx, self.rows = indices, padding_idx, weight.shape[0]
        return weight.take(indices, axis=0)

    def backward(self, grad):
        flat = grad.reshape(-1, grad.shape[-1])
        dw = embedding_kernel.accumulate_rows(self.indices.reshape(-1), flat, self.rows)
        if self.padding_idx is not None:
            dw[self.padding_idx] = 0
        return dw


def embedding(input, weight: Tensor, padding_idx: int | None = None) -> Tensor:
    """Look up rows of ``weight``: ``weight[input]``.

    The gradient adds up into the rows that were read (a repeated index gets the sum); the
    row ``padding_idx``, if given, gets no gradient.

    Args:
        input: integer indices (a Tensor or array of any shape), each in
            ``[0, num_embeddings)``.
        weight: (num_embeddings, embedding_dim) table.
        padding_idx: a row that never learns; negative values count from the end.

    Shape:
        input (*) -> (*, embedding_dim).

    Raises:
        ValueError: if ``input`` is not integer, or an index or ``padding_idx`` is out of
            range.

    Example:
        >>> import numpy as np
        >>> import cnnlab
        >>> from cnnlab.nn import functional as F
        >>> table = cnnlab.Tensor(np.arange(6.0).reshape(3, 2), requires_grad=True)
        >>> out = F.embedding(np.array([[2, 0, 2]]), table, padding_idx=0)
        >>> out.data.tolist()
        [[[4.0, 5.0], [0.0, 1.0], [4.0, 5.0]]]
        >>> out.sum().backward()
        >>> table.grad.tolist()  # row 2 was read twice, row 0 is padding
        [[0.0, 0.0], [0.0, 0.0], [2.0, 2.0]]
    """
    indices = input.data if isinstance(input, Tensor) else np.asarray(input)
    rows = weight.shape[0]
    if indices.dtype.kind not in "iu":
        raise ValueError(f"embedding expected integer indices, got dtype {indices.dtype}; "
                         "convert token ids with .astype(np.int64)")
    if weight.ndim != 2:
        raise ValueError(f"embedding expected a 2-D weight (num_embeddings, embedding_dim), "
                         f"got shape {weight.shape}")
    if indices.size and (indices.min() < 0 or indices.max() >= rows):
        bad = indices.min() if indices.min() < 0 else indices.max()
        raise ValueError(f"embedding: index {int(bad)} is out of range for a table of "
                         f"{rows} rows (expected 0 <= index < {rows}); is the vocabulary "
                         "larger than num_embeddings?")
    if padding_idx is not None:
        if not -rows <= padding_idx < rows:
            raise ValueError(f"embedding: padding_idx must be in [-{rows}, {rows}), got "
                             f"{padding_idx}")
        padding_idx = int(padding_idx) % rows
    return Embedding.apply(weight, indices=indices, padding_idx=padding_idx)


class Stack(Function):
    """Stack equally shaped arrays along a new first axis."""

    def forward(self, *arrays):
        return np.stack(arrays)

    def backward(self, grad):
        return tuple(grad[i] if need else None for i, need in enumerate(self.needs_grad))


class Concat(Function):
    """Concatenate arrays along their last axis."""

    def forward(self, *arrays):
        self.sizes = [a.shape[-1] for a in arrays]
        return np.concatenate(arrays, axis=-1)

    def backward(self, grad):
        bounds = np.cumsum([0, *self.sizes])
        return tuple(np.ascontiguousarray(grad[..., a:z]) if need else None
                     for a, z, need in zip(bounds[:-1], bounds[1:], self.needs_grad,
                                           strict=True))


def stack(tensors: list[Tensor]) -> Tensor:
    """Stack equally shaped tensors along a new first axis (one tensor is just reshaped)."""
    if len(tensors) == 1:
        return tensors[0].reshape(1, *tensors[0].shape)
    return Stack.apply(*tensors)


def concat_last(tensors: list[Tensor]) -> Tensor:
    """Concatenate tensors along their last axis."""
    return tensors[0] if len(tensors) == 1 else Concat.apply(*tensors)


def lstm_layer(x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor,
               b_ih: Tensor | None = None, b_hh: Tensor | None = None,
               reverse: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """One direction of one LSTM layer over a time-major sequence, as one op.

    Gates in PyTorch's order: ``i, f, g, o = split(x W_ih^T + b_ih + h W_hh^T + b_hh, 4)``;
    ``c' = sigmoid(f) c + sigmoid(i) tanh(g)``, ``h' = sigmoid(o) tanh(c')``.

    Args:
        x: (L, N, H_in) input sequence.
        h0, c0: (N, H) initial hidden and cell states.
        w_ih: (4H, H_in); w_hh: (4H, H); b_ih, b_hh: (4H,) or both None.
        reverse: run from the last position to the first (the backward direction of a
            bidirectional layer); ``output[t]`` is then the state after reading
            ``x[t], ..., x[L-1]``.

    Shape:
        output (L, N, H); h_n, c_n (N, H).

    Returns:
        ``(output, h_n, c_n)``.
    """
    args = (x, h0, c0, w_ih, w_hh) + ((b_ih, b_hh) if b_ih is not None else ())
    packed = LSTMLayer.apply(*args, reverse=reverse)
    steps = x.shape[0]
    if reverse:
        return packed[:steps], packed[0], packed[steps + 1]
    return packed[1:steps + 1], packed[steps], packed[steps + 1]


def gru_layer(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
              b_hh: Tensor | None = None, reverse: bool = False) -> tuple[Tensor, Tensor]:
    """One direction of one GRU layer over a time-major sequence, as one op.

    Gates in PyTorch's order: ``r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)``, ``z`` likewise,
    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h' = (1 - z) n + z h``.

    Args:
        x: (L, N, H_in) input sequence.
        h0: (N, H) initial hidden state.
        w_ih: (3H, H_in); w_hh: (3H, H); b_ih, b_hh: (3H,) or both None.
        reverse: run from the last position to the first.

    Shape:
        output (L, N, H); h_n (N, H).

    Returns:
        ``(output, h_n)``.
    """
    args = (x, h0, w_ih, w_hh) + ((b_ih, b_hh) if b_ih is not None else ())
    hs = GRULayer.apply(*args, reverse=reverse)
    steps = x.shape[0]
    if reverse:
        return hs[:steps], hs[0]
    return hs[1:], hs[steps]


# ----- readable references -------------------------------------------------------------------
# The same layers as a graph of small ops, one step at a time, exactly as the equations read:
# slow (a dozen graph nodes per step) but obviously right; the tests hold the fused ops to
# them, torch or no torch.


def lstm_reference(x: Tensor, h: Tensor, c: Tensor, w_ih: Tensor, w_hh: Tensor,
                   b_ih: Tensor | None = None, b_hh: Tensor | None = None
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`lstm_layer` (forward direction) built from elementary ops: ``(output, h_n,
    c_n)`` with ``output`` (L, N, H)."""
    from cnnlab.ops.activation import sigmoid, tanh

    hidden = w_hh.shape[1]
    outputs = []
    for t in range(x.shape[0]):
        z = x[t] @ w_ih.T + h @ w_hh.T
        if b_ih is not None:
            z = z + b_ih + b_hh
        i, f = sigmoid(z[:, :hidden]), sigmoid(z[:, hidden:2 * hidden])
        g, o = tanh(z[:, 2 * hidden:3 * hidden]), sigmoid(z[:, 3 * hidden:])
        c = f * c + i * g
        h = o * tanh(c)
        outputs.append(h)
    return stack(outputs), h, c


def gru_reference(x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
                  b_hh: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """:func:`gru_layer` (forward direction) built from elementary ops: ``(output, h_n)``."""
    from cnnlab.ops.activation import sigmoid, tanh

    hidden = w_hh.shape[1]
    outputs = []
    for t in range(x.shape[0]):
        gi, gh = x[t] @ w_ih.T, h @ w_hh.T
        if b_ih is not None:
            gi, gh = gi + b_ih, gh + b_hh
        r = sigmoid(gi[:, :hidden] + gh[:, :hidden])
        z = sigmoid(gi[:, hidden:2 * hidden] + gh[:, hidden:2 * hidden])
        n = tanh(gi[:, 2 * hidden:] + r * gh[:, 2 * hidden:])
        h = (1 - z) * n + z * h
        outputs.append(h)
    return stack(outputs), h
