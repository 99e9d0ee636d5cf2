"""Sequence layers: Embedding, LSTM, GRU and their single-step cells, as in PyTorch.

Same constructor arguments, parameter names (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...),
shapes, gate order and initialization as ``torch.nn``, so a PyTorch ``state_dict`` loads
as it is. Each layer of a recurrent network (and each direction) runs as one op with a
hand-written backpropagation through time (see :mod:`cnnlab.ops.rnn`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cnnlab.nn import init
from cnnlab.nn.module import Module, Parameter
from cnnlab.ops import checks
from cnnlab.ops import dropout as dropout_op
from cnnlab.ops import rnn as rnn_op
from cnnlab.tensor import Tensor


def _positive_int(value: Any, name: str, layer: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{layer}: {name} must be a positive integer, got {value!r}")
    return int(value)


class Embedding(Module):
    """A lookup table of ``num_embeddings`` vectors of size ``embedding_dim``.

    Args:
        num_embeddings: size of the vocabulary.
        embedding_dim: size of each vector.
        padding_idx: a row initialized to zeros that receives no gradient (for the padding
            token); negative values count from the end.

    Shape:
        integer input (*) -> (*, embedding_dim). Parameters: ``num_embeddings *
        embedding_dim`` weights, drawn from N(0, 1) as in PyTorch.

    Raises:
        ValueError: on a non-integer input or an index outside ``[0, num_embeddings)``.

    Example:
        >>> import numpy as np
        >>> from cnnlab import nn
        >>> emb = nn.Embedding(10, 3, padding_idx=0)
        >>> emb(np.array([[1, 2, 0], [4, 0, 0]])).shape
        (2, 3, 3)
        >>> emb.weight.data[0].tolist()
        [0.0, 0.0, 0.0]
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None):
        super().__init__()
        self.num_embeddings = _positive_int(num_embeddings, "num_embeddings", "Embedding")
        self.embedding_dim = _positive_int(embedding_dim, "embedding_dim", "Embedding")
        if padding_idx is not None:
            if isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer)) \
                    or not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"Embedding: padding_idx must be an integer in "
                                 f"[-{num_embeddings}, {num_embeddings}), got {padding_idx!r}")
            padding_idx = int(padding_idx) % num_embeddings
        self.padding_idx = padding_idx
        self.weight = Parameter(np.empty((num_embeddings, embedding_dim), dtype=np.float32))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.weight.data[...] = init.normal(self.weight.shape)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    def forward(self, input: Any) -> Tensor:
        try:
            return rnn_op.embedding(input, self.weight, self.padding_idx)
        except ValueError as exc:
            raise ValueError(f"{self!r}: {exc}") from None

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        return s + ("" if self.padding_idx is None else f", padding_idx={self.padding_idx}")


def _check_dtypes(layer: Module, x: Tensor, params: list[Parameter]) -> None:
    """A floating-point input of the parameters' dtype, as every op with weights wants."""
    if x.dtype.kind != "f":
        raise TypeError(f"{layer!r} expected a floating-point input, got dtype {x.dtype}; "
                        "token ids go through an nn.Embedding first")
    if params:
        checks.check_float_input(repr(layer), x, params[0])


class _RNNBase(Module):
    """Shared by LSTM and GRU: arguments, parameters, shapes and the layer loop."""

    _gates = 0  # 4 for LSTM, 3 for GRU

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False):
        super().__init__()
        name = type(self).__name__
        self.input_size = _positive_int(input_size, "input_size", name)
        self.hidden_size = _positive_int(hidden_size, "hidden_size", name)
        self.num_layers = _positive_int(num_layers, "num_layers", name)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or \
                not 0.0 <= dropout <= 1.0:
            raise ValueError(f"{name}: dropout must be a probability in [0, 1], got "
                             f"{dropout!r}")
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        directions = 2 if self.bidirectional else 1
        gates = self._gates * hidden_size
        # PyTorch's order: per layer, per direction: weight_ih, weight_hh, bias_ih, bias_hh.
        self._weight_names: list[list[tuple[str, ...]]] = []
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else hidden_size * directions
            per_direction = []
            for suffix in ("", "_reverse")[:directions]:
                names = [f"weight_ih_l{layer}{suffix}", f"weight_hh_l{layer}{suffix}"]
                setattr(self, names[0], Parameter(np.empty((gates, layer_in), np.float32)))
                setattr(self, names[1], Parameter(np.empty((gates, hidden_size), np.float32)))
                if self.bias:
                    names += [f"bias_ih_l{layer}{suffix}", f"bias_hh_l{layer}{suffix}"]
                    for bias_name in names[2:]:
                        setattr(self, bias_name, Parameter(np.empty(gates, np.float32)))
                per_direction.append(tuple(names))
            self._weight_names.append(per_direction)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every weight and bias from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            p.data[...] = init.uniform(p.shape, bound, p.dtype)

    @property
    def _directions(self) -> int:
        return 2 if self.bidirectional else 1

    def pass_batch(self, *args: Any) -> int:
        """The sequences' batch, which the recurrent kernels split over threads (the
        second dimension, the first with ``batch_first``; unbatched input has none)."""
        x = args[0] if args else None
        if getattr(x, "ndim", 0) != 3:
            return 0
        return x.shape[0] if self.batch_first else x.shape[1]

    def _prepare(self, input: Tensor, hx: Any) -> tuple[Tensor, list[Tensor], bool]:
        """The input as (L, N, H_in), the initial states as (layers*directions, N, H)
        tensors (zeros when not given), and whether the input had a batch dimension."""
        if not isinstance(input, Tensor):
            raise TypeError(f"{self!r} expected a Tensor input, got {type(input).__name__}")
        if input.ndim not in (2, 3) or input.shape[-1] != self.input_size:
            layout = "(N, L, H_in)" if self.batch_first else "(L, N, H_in)"
            raise ValueError(
                f"{self!r} expected input of shape {layout} or (L, H_in) with H_in = "
                f"{self.input_size}, got shape {input.shape}"
                + ("; with batch_first=True the batch comes first"
                   if input.ndim == 3 and input.shape[-1] == self.input_size else ""))
        params = list(self.parameters())
        _check_dtypes(self, input, params)
        batched = input.ndim == 3
        x = input
        if not batched:
            x = x.reshape(x.shape[0], 1, x.shape[1])
        elif self.batch_first:
            x = x.transpose(0, 1)
        steps, n = x.shape[0], x.shape[1]
        if steps == 0:
            raise ValueError(f"{self!r} got an empty sequence (input shape {input.shape})")
        count = self.num_layers * self._directions
        want = (count, n, self.hidden_size) if batched else (count, self.hidden_size)
        states = self._split_states(hx)
        out = []
        for which, h in states:
            if h is None:
                out.append(Tensor(np.zeros((count, n, self.hidden_size), dtype=x.dtype)))
                continue
            if not isinstance(h, Tensor):
                raise TypeError(f"{self!r}: the initial {which} must be a Tensor, got "
                                f"{type(h).__name__}")
            if h.shape != want:
                raise ValueError(f"{self!r} expected the initial {which} of shape {want} "
                                 f"(num_layers * num_directions, batch, hidden_size"
                                 f"{'' if batched else ' without the batch'}), got "
                                 f"{h.shape}")
            if h.dtype != x.dtype:
                raise TypeError(f"{self!r}: the initial {which} is {h.dtype} but the input "
                                f"is {x.dtype}; give both the same dtype")
            out.append(h if batched else h.reshape(count, 1, self.hidden_size))
        return x, out, batched

    def _split_states(self, hx: Any) -> list[tuple[str, Any]]:
        raise NotImplementedError

    def _layer(self, x: Tensor, states: list[Tensor], names: tuple[str, ...],
               reverse: bool) -> tuple[Tensor, list[Tensor]]:
        raise NotImplementedError

    def _run(self, x: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """Every layer and direction; returns the output (L, N, D*H) and the final states,
        each stacked to (layers*directions, N, H)."""
        finals: list[list[Tensor]] = [[] for _ in states]
        for layer, per_direction in enumerate(self._weight_names):
            outputs = []
            for d, names in enumerate(per_direction):
                k = layer * self._directions + d
                out, last = self._layer(x, [s[k] for s in states], names, reverse=d == 1)
                outputs.append(out)
                for store, state in zip(finals, last, strict=True):
                    store.append(state)
            x = rnn_op.concat_last(outputs)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = dropout_op.dropout(x, self.dropout, True)
        return x, [rnn_op.stack(f) for f in finals]

    def _finish(self, output: Tensor, finals: list[Tensor],
                batched: bool) -> tuple[Tensor, list[Tensor]]:
        if not batched:
            output = output.reshape(output.shape[0], output.shape[2])
            finals = [f.reshape(f.shape[0], f.shape[2]) for f in finals]
        elif self.batch_first:
            output = output.transpose(0, 1)
        return output, finals

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


_RNN_ARGS = """
    Args:
        input_size: features of each input step (H_in).
        hidden_size: features of the hidden state (H).
        num_layers: stacked layers; layer k > 0 reads layer k-1's output.
        bias: learn ``bias_ih`` and ``bias_hh`` (both, as in PyTorch).
        batch_first: input and output are (N, L, ...) instead of (L, N, ...); the states
            stay (layers * directions, N, H).
        dropout: dropout probability on the output of every layer except the last, in
            training mode only (cnnlab's seeded generator draws the masks).
        bidirectional: run a second layer stack from the last step to the first; outputs
            are concatenated (forward first), states interleaved per layer (forward, reverse).
"""


class LSTM(_RNNBase):
    """Long short-term memory over a sequence, as ``torch.nn.LSTM``.

    Per layer and step, with the gates in PyTorch's order::

        i, f, g, o = split(x W_ih^T + b_ih + h W_hh^T + b_hh, 4)
        c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
        h' = sigmoid(o) * tanh(c')
    {args}
    Shape:
        input (L, N, H_in), or (N, L, H_in) with ``batch_first``, or unbatched (L, H_in);
        optional ``hx = (h0, c0)``, each (num_layers * D, N, H) (unbatched: without N),
        zeros when omitted; D = 2 if bidirectional else 1.
        output (L, N, D*H) (batch_first: (N, L, D*H)); h_n, c_n like h0.
        Parameters per layer and direction: ``weight_ih_l{{k}}`` (4H, H_in or D*H),
        ``weight_hh_l{{k}}`` (4H, H), ``bias_ih_l{{k}}`` and ``bias_hh_l{{k}}`` (4H,), with the
        suffix ``_reverse`` for the second direction; all drawn from U(-1/sqrt(H), 1/sqrt(H)).

    Returns:
        ``(output, (h_n, c_n))``.

    Raises:
        ValueError: on an input or state of the wrong shape.
        TypeError: on an input or state whose dtype differs from the parameters'.

    Example:
        >>> import numpy as np
        >>> import cnnlab
        >>> from cnnlab import nn
        >>> lstm = nn.LSTM(8, 16, num_layers=2, batch_first=True)
        >>> x = cnnlab.Tensor(np.zeros((4, 5, 8), dtype=np.float32))
        >>> out, (h, c) = lstm(x)
        >>> out.shape, h.shape, c.shape
        ((4, 5, 16), (2, 4, 16), (2, 4, 16))
        >>> [name for name, _ in lstm.named_parameters()][:4]
        ['weight_ih_l0', 'weight_hh_l0', 'bias_ih_l0', 'bias_hh_l0']
    """

    _gates = 4

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        x, states, batched = self._prepare(input, hx)
        output, finals = self._finish(*self._run(x, states), batched)
        return output, (finals[0], finals[1])

    def _split_states(self, hx: Any) -> list[tuple[str, Any]]:
        if hx is None:
            return [("hidden state h0", None), ("cell state c0", None)]
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise ValueError(f"{self!r} expected hx = (h0, c0), a pair of tensors, got "
                             f"{type(hx).__name__}")
        return [("hidden state h0", hx[0]), ("cell state c0", hx[1])]

    def _layer(self, x, states, names, reverse):
        weights = [getattr(self, n) for n in names]
        out, h_n, c_n = rnn_op.lstm_layer(x, states[0], states[1], *weights, reverse=reverse)
        return out, [h_n, c_n]


class GRU(_RNNBase):
    """Gated recurrent unit over a sequence, as ``torch.nn.GRU``.

    Per layer and step, with the gates in PyTorch's order::

        r = sigmoid(x W_ir^T + b_ir + h W_hr^T + b_hr)
        z = sigmoid(x W_iz^T + b_iz + h W_hz^T + b_hz)
        n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))
        h' = (1 - z) * n + z * h
    {args}
    Shape:
        input (L, N, H_in), or (N, L, H_in) with ``batch_first``, or unbatched (L, H_in);
        optional ``hx`` (num_layers * D, N, H) (unbatched: without N), zeros when omitted.
        output (L, N, D*H) (batch_first: (N, L, D*H)); h_n like hx. Parameters as for
        :class:`LSTM` with 3H rows (r, z, n) instead of 4H.

    Returns:
        ``(output, h_n)``.

    Raises:
        ValueError: on an input or state of the wrong shape.
        TypeError: on an input or state whose dtype differs from the parameters'.

    Example:
        >>> import numpy as np
        >>> import cnnlab
        >>> from cnnlab import nn
        >>> gru = nn.GRU(8, 16, bidirectional=True)
        >>> out, h = gru(cnnlab.Tensor(np.zeros((5, 4, 8), dtype=np.float32)))
        >>> out.shape, h.shape
        ((5, 4, 32), (2, 4, 16))
    """

    _gates = 3

    def forward(self, input: Tensor, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x, states, batched = self._prepare(input, hx)
        output, finals = self._finish(*self._run(x, states), batched)
        return output, finals[0]

    def _split_states(self, hx: Any) -> list[tuple[str, Any]]:
        return [("hidden state h0", hx)]

    def _layer(self, x, states, names, reverse):
        weights = [getattr(self, n) for n in names]
        out, h_n = rnn_op.gru_layer(x, states[0], *weights, reverse=reverse)
        return out, [h_n]


LSTM.__doc__ = LSTM.__doc__.format(args=_RNN_ARGS)
GRU.__doc__ = GRU.__doc__.format(args=_RNN_ARGS)


class _CellBase(Module):
    _gates = 0

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        name = type(self).__name__
        self.input_size = _positive_int(input_size, "input_size", name)
        self.hidden_size = _positive_int(hidden_size, "hidden_size", name)
        gates = self._gates * hidden_size
        self.weight_ih = Parameter(np.empty((gates, input_size), np.float32))
        self.weight_hh = Parameter(np.empty((gates, hidden_size), np.float32))
        self.bias_ih = Parameter(np.empty(gates, np.float32)) if bias else None
        self.bias_hh = Parameter(np.empty(gates, np.float32)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every weight and bias from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            p.data[...] = init.uniform(p.shape, bound, p.dtype)

    def pass_batch(self, *args: Any) -> int:
        """The batch of a (N, H_in) input, which the kernels split over threads."""
        x = args[0] if args else None
        return len(x) if getattr(x, "ndim", 0) == 2 else 0

    def _weights(self) -> list[Tensor]:
        if self.bias_ih is None:
            return [self.weight_ih, self.weight_hh]
        return [self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh]

    def _prepare(self, input: Tensor, states: list[tuple[str, Any]]
                 ) -> tuple[Tensor, list[Tensor], bool]:
        """The input as a one-step sequence (1, N, H_in), the states as (N, H)."""
        if not isinstance(input, Tensor):
            raise TypeError(f"{self!r} expected a Tensor input, got {type(input).__name__}")
        if input.ndim not in (1, 2) or input.shape[-1] != self.input_size:
            raise ValueError(f"{self!r} expected input of shape (N, {self.input_size}) or "
                             f"({self.input_size},), got shape {input.shape}")
        _check_dtypes(self, input, list(self.parameters()))
        batched = input.ndim == 2
        n = input.shape[0] if batched else 1
        want = (n, self.hidden_size) if batched else (self.hidden_size,)
        out = []
        for which, h in states:
            if h is None:
                out.append(Tensor(np.zeros((n, self.hidden_size), dtype=input.dtype)))
                continue
            if not isinstance(h, Tensor):
                raise TypeError(f"{self!r}: the {which} must be a Tensor, got "
                                f"{type(h).__name__}")
            if h.shape != want:
                raise ValueError(f"{self!r} expected the {which} of shape {want}, got shape "
                                 f"{h.shape}")
            if h.dtype != input.dtype:
                raise TypeError(f"{self!r}: the {which} is {h.dtype} but the input is "
                                f"{input.dtype}; give both the same dtype")
            out.append(h if batched else h.reshape(1, self.hidden_size))
        return input.reshape(1, n, self.input_size), out, batched

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        return s + ("" if self.bias_ih is not None else ", bias=False")


class LSTMCell(_CellBase):
    """One LSTM step, as ``torch.nn.LSTMCell`` (gates i, f, g, o; see :class:`LSTM`).

    Args:
        input_size: features of the input (H_in).
        hidden_size: features of the hidden state (H).
        bias: learn ``bias_ih`` and ``bias_hh``.

    Shape:
        input (N, H_in) or (H_in,); optional ``hx = (h, c)``, each (N, H) or (H,), zeros
        when omitted. Returns ``(h', c')`` of the same shape. Parameters ``weight_ih``
        (4H, H_in), ``weight_hh`` (4H, H), ``bias_ih``, ``bias_hh`` (4H,).

    Raises:
        ValueError: on an input or state of the wrong shape.
        TypeError: on an input or state whose dtype differs from the parameters'.

    Example:
        >>> import numpy as np
        >>> import cnnlab
        >>> from cnnlab import nn
        >>> cell = nn.LSTMCell(3, 5)
        >>> h, c = cell(cnnlab.Tensor(np.ones((2, 3), dtype=np.float32)))
        >>> h, c = cell(cnnlab.Tensor(np.ones((2, 3), dtype=np.float32)), (h, c))
        >>> h.shape, c.shape
        ((2, 5), (2, 5))
    """

    _gates = 4

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, Tensor]:
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise ValueError(f"{self!r} expected hx = (h, c), a pair of tensors, got "
                             f"{type(hx).__name__}")
        h, c = hx if hx is not None else (None, None)
        x, (h, c), batched = self._prepare(input, [("hidden state h", h), ("cell state c", c)])
        _, h_new, c_new = rnn_op.lstm_layer(x, h, c, *self._weights())
        if not batched:
            return h_new.reshape(self.hidden_size), c_new.reshape(self.hidden_size)
        return h_new, c_new


class GRUCell(_CellBase):
    """One GRU step, as ``torch.nn.GRUCell`` (gates r, z, n; see :class:`GRU`).

    Args:
        input_size: features of the input (H_in).
        hidden_size: features of the hidden state (H).
        bias: learn ``bias_ih`` and ``bias_hh``.

    Shape:
        input (N, H_in) or (H_in,); optional ``hx`` (N, H) or (H,), zeros when omitted.
        Returns ``h'`` of the same shape. Parameters ``weight_ih`` (3H, H_in), ``weight_hh``
        (3H, H), ``bias_ih``, ``bias_hh`` (3H,).

    Raises:
        ValueError: on an input or state of the wrong shape.
        TypeError: on an input or state whose dtype differs from the parameters'.

    Example:
        >>> import numpy as np
        >>> import cnnlab
        >>> from cnnlab import nn
        >>> cell = nn.GRUCell(3, 5)
        >>> cell(cnnlab.Tensor(np.ones(3, dtype=np.float32))).shape
        (5,)
    """

    _gates = 3

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), batched = self._prepare(input, [("hidden state", hx)])
        _, h_new = rnn_op.gru_layer(x, h, *self._weights())
        return h_new if batched else h_new.reshape(self.hidden_size)
