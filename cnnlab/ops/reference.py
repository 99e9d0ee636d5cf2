"""The textbook versions of convolution and pooling: loops over every output value.

Slow on purpose and obviously right: each output is the inner product of a filter and a
window of the zero-padded input, plus a bias. Tests hold the fast kernels to these, and
``cnnlab explain`` shows exactly this arithmetic.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab.shape import conv_output_size, pair


def pad_input(x: np.ndarray, padding: Any, value: float = 0.0) -> np.ndarray:
    """Pad the last two axes of a (..., H, W) array with ``value`` on every side."""
    ph, pw = pair(padding, "padding")
    widths = [(0, 0)] * (x.ndim - 2) + [(ph, ph), (pw, pw)]
    return np.pad(x, widths, constant_values=value)


def conv2d_naive(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1) -> np.ndarray:
    """Convolution of (N, C, H, W) input with (F, C/groups, KH, KW) filters, one value at a time.

    ``out[n, f, i, j] = b[f] + sum over c, u, v of
    w[f, c, u, v] * xpad[n, g*C/groups + c, i*S + u*D, j*S + v*D]``.
    """
    sh, sw = pair(stride)
    dh, dw = pair(dilation)
    n, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    oh = conv_output_size(h, kh, sh, pair(padding)[0], dh)
    ow = conv_output_size(wd, kw, sw, pair(padding)[1], dw)
    xp = pad_input(x, padding)
    fg = f // groups
    out = np.zeros((n, f, oh, ow), dtype=np.result_type(x, w))
    for b_ in range(n):
        for k in range(f):
            g = k // fg
            for i in range(oh):
                for j in range(ow):
                    window = xp[b_, g * cg:(g + 1) * cg,
                                i * sh:i * sh + dh * (kh - 1) + 1:dh,
                                j * sw:j * sw + dw * (kw - 1) + 1:dw]
                    out[b_, k, i, j] = np.sum(window * w[k]) + (0 if b is None else b[k])
    return out


def _pool_naive(x: np.ndarray, kernel_size: Any, stride: Any, padding: Any, reduce,
                pad_value: float) -> np.ndarray:
    kh, kw = pair(kernel_size)
    sh, sw = (kh, kw) if stride is None else pair(stride)
    ph, pw = pair(padding)
    n, c, h, w = x.shape
    oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
    xp = pad_input(x, padding, pad_value)
    out = np.zeros((n, c, oh, ow), dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            window = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
            out[:, :, i, j] = reduce(window.reshape(n, c, -1), axis=-1)
    return out


def max_pool2d_naive(x: np.ndarray, kernel_size: Any, stride: Any = None,
                     padding: Any = 0) -> np.ndarray:
    """Max pooling: the largest value of each window (padding is -inf, so it never wins)."""
    return _pool_naive(x, kernel_size, stride, padding, np.max, -np.inf)


def avg_pool2d_naive(x: np.ndarray, kernel_size: Any, stride: Any = None,
                     padding: Any = 0) -> np.ndarray:
    """Average pooling: the mean of each window, zero padding included."""
    return _pool_naive(x, kernel_size, stride, padding, np.mean, 0.0)


def conv_transpose2d_naive(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None,
                           stride: Any = 1, padding: Any = 0, output_padding: Any = 0,
                           groups: int = 1, dilation: Any = 1) -> np.ndarray:
    """Transposed convolution of (N, C_in, H, W) input with (C_in, C_out/groups, KH, KW)
    weights, one input value at a time: each value adds its filter, scaled by itself, into
    the output.

    ``out[n, g*C_out/groups + o, i*S - P + u*D, j*S - P + v*D] += x[n, c, i, j] * w[c, o, u, v]``
    for input channel ``c`` of group ``g``, then ``+ b``; positions outside the output
    (the cropped ``padding``) are dropped.
    """
    from cnnlab.shape import conv_transpose_output_size

    sh, sw = pair(stride)
    ph, pw = pair(padding)
    oph, opw = pair(output_padding)
    dh, dw = pair(dilation)
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    oh = conv_transpose_output_size(h, kh, sh, ph, oph, dh)
    ow = conv_transpose_output_size(wd, kw, sw, pw, opw, dw)
    cg = c // groups
    # Room for the cropped borders on every side, so no index is ever negative (the last
    # output_padding rows and columns may receive nothing but the bias).
    full = np.zeros((n, og * groups, oh + 2 * ph, ow + 2 * pw), dtype=np.result_type(x, w))
    for b_ in range(n):
        for ci in range(c):
            outs = slice(ci // cg * og, (ci // cg + 1) * og)  # the output channels of its group
            for i in range(h):
                for j in range(wd):
                    for u in range(kh):
                        for v in range(kw):
                            full[b_, outs, i * sh + u * dh, j * sw + v * dw] += \
                                x[b_, ci, i, j] * w[ci, :, u, v]
    out = full[:, :, ph:ph + oh, pw:pw + ow]
    return out if b is None else out + b[None, :, None, None]
