"""Forward-and-gradient comparison with PyTorch for the test files of single op families.

Like ``tests/test_parity_torch.py`` (same tolerances: relative error <= 1e-4 in float32,
<= 1e-9 in float64, dtypes preserved), but importable by test files that also hold tests
which run without torch: each test calls :func:`need_torch` first, which skips it cleanly
when torch is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

from cnnlab import Tensor

TOL = {np.float32: 1e-4, np.float64: 1e-9}
DTYPES = [np.float32, np.float64]


def need_torch():
    """The torch module, or skip the calling test."""
    return pytest.importorskip("torch", reason="parity tests compare against PyTorch")


def rel_error(ours: np.ndarray, theirs: np.ndarray) -> float:
    scale = float(np.max(np.abs(theirs))) if theirs.size else 0.0
    diff = float(np.max(np.abs(ours - theirs))) if theirs.size else 0.0
    return diff / scale if scale > 0 else diff


def assert_close(ours: np.ndarray, theirs, dtype, what: str) -> None:
    torch = need_torch()
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    ours = np.asarray(ours)  # a cnnlab Tensor (a .grad) or an array
    assert ours.dtype == dtype, f"{what}: dtype {ours.dtype}, expected {np.dtype(dtype)}"
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape}, torch {theirs.shape}"
    err = rel_error(ours.astype(np.float64), theirs.astype(np.float64))
    assert err <= TOL[dtype], (f"{what}: relative error {err:.3g} > {TOL[dtype]:g} "
                               f"({np.dtype(dtype).name})")


def compare(ours: Callable[..., Tensor], theirs: Callable, arrays: Sequence[np.ndarray], dtype,
            names: Sequence[str] | None = None, seed: int = 0,
            layouts: Sequence[Callable[[np.ndarray], np.ndarray]] | None = None) -> None:
    """Run ``ours`` on cnnlab tensors and ``theirs`` on torch tensors made from the same
    arrays; compare the outputs, then every input's gradient after the same upstream
    gradient. ``layouts`` may give each cnnlab input another memory layout (same values)."""
    torch = need_torch()
    names = names or [f"input {i}" for i in range(len(arrays))]
    layouts = layouts or [lambda a: a] * len(arrays)
    cn = [Tensor(lay(np.array(a, dtype=dtype)), requires_grad=True)
          for a, lay in zip(arrays, layouts, strict=True)]
    th = [torch.tensor(np.array(a, dtype=dtype), requires_grad=True) for a in arrays]
    out_cn, out_th = ours(*cn), theirs(*th)
    assert_close(out_cn.data, out_th, dtype, "output")
    g = np.random.default_rng(seed).standard_normal(out_cn.shape).astype(dtype)
    out_cn.backward(g)
    out_th.backward(torch.from_numpy(g))
    for name, c, t in zip(names, cn, th, strict=True):
        assert c.grad is not None, f"{name}: no gradient"
        assert_close(c.grad, t.grad, dtype, f"gradient of {name}")


def channels_last(a: np.ndarray) -> np.ndarray:
    """The same (N, C, H, W) values held in NHWC memory (how cnnlab's conv layers return
    their maps)."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
