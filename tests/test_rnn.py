"""Embedding, LSTM, GRU and their cells: PyTorch parity (values and every gradient),
float64 central differences, the readable step-by-step references, dropout between layers,
and the error messages."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_gradients, check_module, check_op

import cnnlab
from cnnlab import Tensor, nn
from cnnlab.nn import functional as F
from cnnlab.ops import dropout as dropout_op
from cnnlab.ops import rnn as rnn_op

TOL = {np.float32: 1e-4, np.float64: 1e-9}


def rel_error(ours: np.ndarray, theirs: np.ndarray) -> float:
    scale = float(np.max(np.abs(theirs))) if theirs.size else 0.0
    diff = float(np.max(np.abs(ours.astype(np.float64) - theirs))) if theirs.size else 0.0
    return diff / scale if scale > 0 else diff


def assert_close(ours, theirs: np.ndarray, dtype, what: str) -> None:
    ours = np.asarray(ours)  # a cnnlab gradient is a Tensor
    assert ours.dtype == dtype, f"{what}: dtype {ours.dtype}, expected {np.dtype(dtype)}"
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape}, expected {theirs.shape}"
    err = rel_error(ours, theirs.astype(np.float64))
    assert err <= TOL[dtype], f"{what}: relative error {err:.3g} > {TOL[dtype]:g}"


def random_configs(kind: str, count: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        out.append(dict(
            kind=kind, seed=int(rng.integers(1 << 30)), steps=int(rng.integers(1, 7)),
            batch=int(rng.integers(1, 5)), input_size=int(rng.integers(1, 8)),
            hidden_size=int(rng.integers(1, 7)), num_layers=1 + i % 3,
            batch_first=bool(i % 2), bias=bool(rng.integers(2)) or i < 2,
            with_state=bool((i // 2) % 2), bidirectional=bool(rng.integers(2)),
        ))
    return out


CONFIGS = random_configs("LSTM", 16, 1) + random_configs("GRU", 16, 2)


def _label(cfg: dict) -> str:
    return (f"{cfg['kind']}-L{cfg['steps']}N{cfg['batch']}I{cfg['input_size']}"
            f"H{cfg['hidden_size']}x{cfg['num_layers']}"
            + ("-bf" if cfg["batch_first"] else "") + ("" if cfg["bias"] else "-nobias")
            + ("-h0" if cfg["with_state"] else "") + ("-bi" if cfg["bidirectional"] else ""))


# ----- PyTorch parity -----------------------------------------------------------------------


def _run_both(cfg: dict, dtype, torch, unbatched: bool = False):
    """The same module, inputs and upstream gradients through torch and cnnlab; returns
    ((cnnlab output, finals, input tensors, module), (torch ...))."""
    rng = np.random.default_rng(cfg["seed"])
    kwargs = dict(num_layers=cfg["num_layers"], bias=cfg["bias"],
                  batch_first=cfg["batch_first"], bidirectional=cfg["bidirectional"],
                  dropout=cfg.get("dropout", 0.0))
    torch.manual_seed(cfg["seed"])
    tmod = getattr(torch.nn, cfg["kind"])(cfg["input_size"], cfg["hidden_size"], **kwargs)
    ours = getattr(nn, cfg["kind"])(cfg["input_size"], cfg["hidden_size"], **kwargs)
    if dtype == np.float64:
        tmod.double()
        ours.double()
    ours.load_state_dict({k: v.detach().numpy() for k, v in tmod.state_dict().items()})
    if cfg.get("eval"):
        tmod.eval()
        ours.eval()
    steps, batch = cfg["steps"], cfg["batch"]
    shape = (batch, steps) if cfg["batch_first"] else (steps, batch)
    if unbatched:
        shape = (steps,)
    x = rng.standard_normal((*shape, cfg["input_size"])).astype(dtype)
    d = 2 if cfg["bidirectional"] else 1
    state_shape = (cfg["num_layers"] * d, *(() if unbatched else (batch,)), cfg["hidden_size"])
    states = [rng.standard_normal(state_shape).astype(dtype)
              for _ in range(2 if cfg["kind"] == "LSTM" else 1)] if cfg["with_state"] else []
    results = []
    for fw in ("cnnlab", "torch"):
        make = (lambda a: Tensor(a.copy(), requires_grad=True)) if fw == "cnnlab" else \
            (lambda a: torch.tensor(a, requires_grad=True))
        xt, st = make(x), [make(s) for s in states]
        mod = ours if fw == "cnnlab" else tmod
        if not st:
            out, fin = mod(xt)
        else:
            out, fin = mod(xt, tuple(st) if cfg["kind"] == "LSTM" else st[0])
        finals = list(fin) if cfg["kind"] == "LSTM" else [fin]
        results.append((out, finals, [xt, *st], mod))
    # The same upstream gradients into the output and every final state.
    (out_c, fin_c, _, _), (out_t, fin_t, _, _) = results
    grads = [rng.standard_normal(out_c.shape).astype(dtype)] + \
        [rng.standard_normal(f.shape).astype(dtype) for f in fin_c]
    loss_c = sum(((t * Tensor(g)).sum() for t, g in zip([out_c, *fin_c], grads, strict=True)),
                 Tensor(np.zeros((), dtype)))
    loss_t = sum((t * torch.from_numpy(g)).sum() for t, g in zip([out_t, *fin_t], grads,
                                                                  strict=True))
    loss_c.backward()
    loss_t.backward()
    return results


def _compare(results, dtype):
    (out_c, fin_c, in_c, mod_c), (out_t, fin_t, in_t, mod_t) = results
    assert_close(out_c.data, out_t.detach().numpy(), dtype, "output")
    for i, (a, b) in enumerate(zip(fin_c, fin_t, strict=True)):
        assert_close(a.data, b.detach().numpy(), dtype, ["h_n", "c_n"][i])
    for name, a, b in zip(["input", "h0", "c0"], in_c, in_t, strict=False):
        assert a.grad is not None, f"{name}: no gradient"
        assert_close(a.grad, b.grad.numpy(), dtype, f"gradient of {name}")
    theirs = dict(mod_t.named_parameters())
    names = [n for n, _ in mod_c.named_parameters()]
    assert names == list(theirs), "parameter names and order differ from torch"
    for name, p in mod_c.named_parameters():
        assert_close(p.grad, theirs[name].grad.numpy(), dtype, f"gradient of {name}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", CONFIGS, ids=_label)
def test_rnn_matches_torch(cfg, dtype):
    torch = pytest.importorskip("torch")
    _compare(_run_both(cfg, dtype, torch), dtype)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("with_state", [False, True])
def test_unbatched_input_matches_torch(kind, with_state):
    torch = pytest.importorskip("torch")
    cfg = dict(kind=kind, seed=5, steps=4, batch=1, input_size=3, hidden_size=5, num_layers=2,
               batch_first=False, bias=True, with_state=with_state, bidirectional=True)
    results = _run_both(cfg, np.float64, torch, unbatched=True)
    assert results[0][0].shape == (4, 10)
    _compare(results, np.float64)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_dropout_is_off_in_eval_mode_and_matches_torch(kind):
    torch = pytest.importorskip("torch")
    cfg = dict(kind=kind, seed=9, steps=5, batch=3, input_size=4, hidden_size=6, num_layers=3,
               batch_first=True, bias=True, with_state=True, bidirectional=False, dropout=0.5,
               eval=True)
    _compare(_run_both(cfg, np.float64, torch), np.float64)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_batch_split_over_threads_matches_torch(kind, monkeypatch):
    """Inside a pass that splits its kernels over the batch (as in a model whose input is a
    batch of images), the time loops run as batch chunks on separate threads and the big
    GEMMs are split by rows: the results are the same."""
    torch = pytest.importorskip("torch")
    from cnnlab.kernels import parallel, recurrent

    if not parallel._blas.available:
        pytest.skip("splitting needs threadpoolctl to hold BLAS at one thread")
    chunks = []
    original = recurrent._chunks
    monkeypatch.setattr(recurrent, "_chunks", lambda n, cost: chunks.append(
        len(original(n, cost))) or original(n, cost))
    previous = cnnlab.get_num_threads()
    cnnlab.set_num_threads(2)
    try:
        cfg = dict(kind=kind, seed=3, steps=12, batch=37, input_size=20, hidden_size=96,
                   num_layers=2, batch_first=True, bias=True, with_state=True,
                   bidirectional=True)
        with parallel.region(batch=37):
            results = _run_both(cfg, np.float32, torch)
    finally:
        cnnlab.set_num_threads(previous)
    assert chunks and max(chunks) == 2
    _compare(results, np.float32)


@pytest.mark.parametrize("kind", ["LSTMCell", "GRUCell"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_cells_match_torch(kind, dtype, batched, bias):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    tcell = getattr(torch.nn, kind)(4, 6, bias=bias)
    cell = getattr(nn, kind)(4, 6, bias=bias)
    if dtype == np.float64:
        tcell.double()
        cell.double()
    cell.load_state_dict({k: v.detach().numpy() for k, v in tcell.state_dict().items()})
    lead = (3,) if batched else ()
    x = rng.standard_normal((*lead, 4)).astype(dtype)
    states = [rng.standard_normal((*lead, 6)).astype(dtype)
              for _ in range(2 if kind == "LSTMCell" else 1)]
    xc, sc = Tensor(x.copy(), requires_grad=True), [Tensor(s, requires_grad=True)
                                                     for s in states]
    xt, st = torch.tensor(x, requires_grad=True), [torch.tensor(s, requires_grad=True)
                                                   for s in states]
    if kind == "LSTMCell":
        outs_c, outs_t = list(cell(xc, tuple(sc))), list(tcell(xt, tuple(st)))
    else:
        outs_c, outs_t = [cell(xc, sc[0])], [tcell(xt, st[0])]
    grads = [rng.standard_normal(o.shape).astype(dtype) for o in outs_c]
    sum(((o * Tensor(g)).sum() for o, g in zip(outs_c, grads, strict=True)),
        Tensor(np.zeros((), dtype))).backward()
    sum((o * torch.from_numpy(g)).sum() for o, g in zip(outs_t, grads, strict=True)).backward()
    for i, (a, b) in enumerate(zip(outs_c, outs_t, strict=True)):
        assert_close(a.data, b.detach().numpy(), dtype, f"output {i}")
    for i, (a, b) in enumerate(zip([xc, *sc], [xt, *st], strict=True)):
        assert_close(a.grad, b.grad.numpy(), dtype, f"gradient of input {i}")
    theirs = dict(tcell.named_parameters())
    assert [n for n, _ in cell.named_parameters()] == list(theirs)
    for name, p in cell.named_parameters():
        assert_close(p.grad, theirs[name].grad.numpy(), dtype, f"gradient of {name}")
    # Without a state: zeros, as in torch.
    out_c = cell(Tensor(x))
    out_t = tcell(torch.tensor(x))
    first_c = out_c[0] if kind == "LSTMCell" else out_c
    first_t = out_t[0] if kind == "LSTMCell" else out_t
    assert_close(first_c.data, first_t.detach().numpy(), dtype, "output without a state")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_embedding_matches_torch(dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    temb = torch.nn.Embedding(11, 5, padding_idx=2)
    emb = nn.Embedding(11, 5, padding_idx=2)
    if dtype == np.float64:
        temb.double()
        emb.double()
    emb.load_state_dict({k: v.detach().numpy() for k, v in temb.state_dict().items()})
    idx = rng.integers(0, 11, size=(6, 9))
    idx[0, :4] = 7  # repeats must add up
    out_c, out_t = emb(idx), temb(torch.from_numpy(idx))
    assert_close(out_c.data, out_t.detach().numpy(), dtype, "output")
    g = rng.standard_normal(out_c.shape).astype(dtype)
    out_c.backward(g)
    out_t.backward(torch.from_numpy(g))
    assert_close(emb.weight.grad, temb.weight.grad.numpy(), dtype, "weight gradient")
    assert not emb.weight.grad.data[2].any()


def test_embedding_init_is_standard_normal_with_zero_padding_row(seeded):
    emb = nn.Embedding(400, 50, padding_idx=-1)
    w = emb.weight.data
    assert w.dtype == np.float32 and emb.padding_idx == 399
    assert not w[399].any()
    assert abs(w[:399].mean()) < 0.02 and abs(w[:399].std() - 1) < 0.02


def test_recurrent_init_is_uniform_within_one_over_sqrt_hidden(seeded):
    lstm = nn.LSTM(30, 64, num_layers=2, bidirectional=True)
    bound = 1 / np.sqrt(64)
    for name, p in lstm.named_parameters():
        assert p.dtype == np.float32, name
        assert np.abs(p.data).max() <= bound, name
    w = lstm.weight_ih_l1_reverse.data
    assert w.shape == (256, 128)
    assert abs(w.std() - bound / np.sqrt(3)) < 0.005  # the std of U(-b, b) is b / sqrt(3)


# ----- float64 central differences ------------------------------------------------------------


@pytest.mark.parametrize("reverse", [False, True])
def test_lstm_layer_op_gradcheck(rng, reverse):
    L, N, I, H = 4, 3, 3, 2
    arrays = [rng.uniform(-1, 1, s) for s in
              [(L, N, I), (N, H), (N, H), (4 * H, I), (4 * H, H), (4 * H,), (4 * H,)]]

    def op(*ts):
        out, h, c = rnn_op.lstm_layer(*ts, reverse=reverse)
        return rnn_op.concat_last([out.reshape(-1), (h * 2).reshape(-1), (c * 3).reshape(-1)])

    check_op(op, *arrays, names=["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"])


@pytest.mark.parametrize("reverse", [False, True])
def test_gru_layer_op_gradcheck(rng, reverse):
    L, N, I, H = 4, 3, 3, 2
    arrays = [rng.uniform(-1, 1, s) for s in
              [(L, N, I), (N, H), (3 * H, I), (3 * H, H), (3 * H,), (3 * H,)]]

    def op(*ts):
        out, h = rnn_op.gru_layer(*ts, reverse=reverse)
        return rnn_op.concat_last([out.reshape(-1), (h * 2).reshape(-1)])

    check_op(op, *arrays, names=["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"])


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_stacked_bidirectional_module_gradcheck(rng, seeded, kind):
    mod = getattr(nn, kind)(3, 2, num_layers=2, bidirectional=True, batch_first=True)
    x = rng.uniform(-1, 1, (2, 3, 3))

    def run():
        out, fin = mod(xt, states if kind == "GRU" else (states, cells))
        finals = [fin] if kind == "GRU" else list(fin)
        return rnn_op.concat_last([t.reshape(-1) for t in [out, *finals]])

    mod.double()
    xt = Tensor(x, requires_grad=True)
    states = Tensor(rng.uniform(-1, 1, (4, 2, 2)), requires_grad=True)
    cells = Tensor(rng.uniform(-1, 1, (4, 2, 2)), requires_grad=True)
    named = list(mod.named_parameters())
    leaves = [xt, states] + ([cells] if kind == "LSTM" else []) + [p for _, p in named]
    names = ["input", "h0"] + (["c0"] if kind == "LSTM" else []) + [n for n, _ in named]
    check_gradients(run, leaves, names=names)


@pytest.mark.parametrize("kind", ["LSTMCell", "GRUCell"])
def test_cell_gradcheck(rng, seeded, kind):
    cell = getattr(nn, kind)(3, 4)
    if kind == "GRUCell":
        check_module(cell, rng.uniform(-1, 1, (2, 3)))
    else:
        wrapped = nn.Module()
        wrapped.cell = cell
        wrapped.forward = lambda x: rnn_op.concat_last(list(cell(x)))
        check_module(wrapped, rng.uniform(-1, 1, (2, 3)))
    cell.double()
    state = Tensor(rng.uniform(-1, 1, (2, 4)), requires_grad=True)
    x = Tensor(rng.uniform(-1, 1, (2, 3)))
    if kind == "LSTMCell":
        c = Tensor(rng.uniform(-1, 1, (2, 4)), requires_grad=True)
        check_gradients(lambda: rnn_op.concat_last(list(cell(x, (state, c)))), [state, c],
                        names=["h", "c"])
    else:
        check_gradients(lambda: cell(x, state), [state], names=["h"])


def test_embedding_gradcheck(rng):
    idx = np.array([[0, 3, 3, 1], [3, 2, 0, 3]])
    check_op(lambda w: F.embedding(idx, w), rng.uniform(-1, 1, (5, 3)),
             names=["weight"])


# ----- the readable references ------------------------------------------------------------------


def test_fused_layers_equal_the_step_by_step_references(rng):
    L, N, I, H = 5, 3, 4, 3
    x, h0, c0 = (Tensor(rng.standard_normal(s), requires_grad=True)
                 for s in [(L, N, I), (N, H), (N, H)])
    for gates, fused, reference in [(4, rnn_op.lstm_layer, rnn_op.lstm_reference),
                                    (3, rnn_op.gru_layer, rnn_op.gru_reference)]:
        weights = [Tensor(rng.uniform(-0.5, 0.5, s), requires_grad=True)
                   for s in [(gates * H, I), (gates * H, H), (gates * H,), (gates * H,)]]
        leaves = [x, h0, *weights] + ([c0] if gates == 4 else [])
        states = (h0, c0) if gates == 4 else (h0,)
        grads = []
        for fn in (fused, reference):
            for t in leaves:
                t.grad = None
            outs = fn(x, *states, *weights)
            loss = sum((o * Tensor(np.arange(o.numel(), dtype=np.float64).reshape(o.shape))).sum()
                       for o in outs)
            loss.backward()
            grads.append(([o.data for o in outs], [t.grad.data.copy() for t in leaves]))
        for a, b in zip(grads[0][0] + grads[0][1], grads[1][0] + grads[1][1], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


# ----- dropout between layers -----------------------------------------------------------------


def _dropout_nodes(root: Tensor) -> list:
    found, stack, seen = [], [root], set()
    while stack:
        node = stack.pop()
        if id(node) in seen or node._ctx is None:
            continue
        seen.add(id(node))
        if isinstance(node._ctx, dropout_op.Dropout):
            found.append(node._ctx)
        stack.extend(node._ctx.parents)
    return found


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_dropout_between_layers_only_in_training(rng, kind):
    cnnlab.manual_seed(1)
    mod = getattr(nn, kind)(8, 200, num_layers=3, dropout=0.3)
    x = Tensor(rng.standard_normal((6, 5, 8)).astype(np.float32), requires_grad=True)
    out_a, _ = mod(x)
    out_b, _ = mod(x)
    masks = [d.mask for d in _dropout_nodes(out_a)]
    assert len(masks) == 2  # between layers 0-1 and 1-2, not after the last one
    for m in masks:
        assert m.shape == (6, 5, 200) and m.dtype == np.float32
        kept = m != 0
        assert abs(kept.mean() - 0.7) < 0.02  # 6,000 draws: binomial std 0.006
        np.testing.assert_allclose(m[kept], 1 / 0.7, rtol=1e-6)
    assert not np.allclose(out_a.data, out_b.data)  # a fresh mask on every call
    mod.eval()
    out_c, _ = mod(x)
    out_d, _ = mod(x)
    assert not _dropout_nodes(out_c)
    np.testing.assert_array_equal(out_c.data, out_d.data)
    plain = getattr(nn, kind)(8, 200, num_layers=3)
    plain.load_state_dict(mod.state_dict())
    np.testing.assert_array_equal(plain(x)[0].data, out_c.data)


def test_dropout_uses_the_seeded_generator_between_layers(rng):
    """Training output = layer 0, then F.dropout drawing from cnnlab's generator, then
    layer 1: reseeding repeats it bit for bit."""
    cnnlab.manual_seed(0)
    lstm = nn.LSTM(4, 6, num_layers=2, dropout=0.5)
    first, second = nn.LSTM(4, 6), nn.LSTM(6, 6)
    state = lstm.state_dict()
    first.load_state_dict({k: v for k, v in state.items() if k.endswith("l0")})
    second.load_state_dict({k.replace("l1", "l0"): v for k, v in state.items()
                            if k.endswith("l1")})
    x = Tensor(rng.standard_normal((5, 2, 4)).astype(np.float32))
    cnnlab.manual_seed(42)
    out, (h, c) = lstm(x)
    cnnlab.manual_seed(42)
    mid, (h0, c0) = first(x)
    expected, (h1, c1) = second(F.dropout(mid, 0.5, True))
    np.testing.assert_array_equal(out.data, expected.data)
    np.testing.assert_array_equal(h.data, np.stack([h0.data[0], h1.data[0]]))
    np.testing.assert_array_equal(c.data, np.stack([c0.data[0], c1.data[0]]))


# ----- names, loading, dtypes and errors --------------------------------------------------------


def test_state_dict_keys_and_shapes_match_torch():
    torch = pytest.importorskip("torch")
    for kind in ("LSTM", "GRU"):
        args = dict(num_layers=3, bidirectional=True, bias=False)
        theirs = getattr(torch.nn, kind)(5, 7, **args).state_dict()
        ours = getattr(nn, kind)(5, 7, **args).state_dict()
        assert list(ours) == list(theirs)
        assert all(ours[k].shape == tuple(theirs[k].shape) for k in ours)
    for kind in ("LSTMCell", "GRUCell", "Embedding"):
        theirs = getattr(torch.nn, kind)(5, 7).state_dict()
        ours = getattr(nn, kind)(5, 7).state_dict()
        assert {k: v.shape for k, v in ours.items()} == \
            {k: tuple(v.shape) for k, v in theirs.items()}


def test_float32_stays_float32_and_float64_stays_float64(rng):
    lstm = nn.LSTM(3, 4, batch_first=True)
    x = Tensor(rng.standard_normal((2, 5, 3)).astype(np.float32), requires_grad=True)
    out, (h, c) = lstm(x)
    assert out.dtype == h.dtype == c.dtype == np.float32
    out.sum().backward()
    assert x.grad.data.dtype == np.float32
    assert all(p.grad.data.dtype == np.float32 for p in lstm.parameters())
    lstm.double()
    out, _ = lstm(Tensor(rng.standard_normal((2, 5, 3))))
    assert out.dtype == np.float64


def test_no_grad_forward_keeps_nothing_and_matches(rng):
    gru = nn.GRU(3, 4, num_layers=2)
    x = Tensor(rng.standard_normal((6, 2, 3)).astype(np.float32))
    out, h = gru(x)
    with cnnlab.no_grad():
        out2, h2 = gru(x)
    assert not out2.requires_grad
    np.testing.assert_array_equal(out.data, out2.data)
    np.testing.assert_array_equal(h.data, h2.data)


def test_second_backward_through_a_layer_is_a_clear_error(rng):
    lstm = nn.LSTM(3, 4)
    out, _ = lstm(Tensor(rng.standard_normal((2, 1, 3)).astype(np.float32)))
    loss = out.sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="LSTMLayer: backward through this recurrent layer "
                                           "ran twice.*run the forward pass again"):
        loss.backward()


def test_repr_shows_non_default_arguments():
    assert repr(nn.LSTM(10, 20)) == "LSTM(10, 20)"
    assert repr(nn.GRU(10, 20, num_layers=2, bias=False, batch_first=True, dropout=0.1,
                       bidirectional=True)) == \
        "GRU(10, 20, num_layers=2, bias=False, batch_first=True, dropout=0.1, bidirectional=True)"
    assert repr(nn.LSTMCell(3, 4, bias=False)) == "LSTMCell(3, 4, bias=False)"
    assert repr(nn.Embedding(100, 8, padding_idx=0)) == "Embedding(100, 8, padding_idx=0)"


def test_errors_name_the_layer_what_was_expected_and_found(rng):
    lstm = nn.LSTM(3, 4, num_layers=2)
    x = Tensor(rng.standard_normal((5, 2, 3)).astype(np.float32))
    with pytest.raises(ValueError, match=r"LSTM\(3, 4, num_layers=2\) expected input of "
                                         r"shape \(L, N, H_in\) or \(L, H_in\) with H_in = 3, "
                                         r"got shape \(5, 2, 7\)"):
        lstm(Tensor(np.zeros((5, 2, 7), np.float32)))
    with pytest.raises(ValueError, match=r"expected the initial hidden state h0 of shape "
                                         r"\(2, 2, 4\) .*got \(1, 2, 4\)"):
        lstm(x, (Tensor(np.zeros((1, 2, 4), np.float32)), Tensor(np.zeros((2, 2, 4),
                                                                          np.float32))))
    with pytest.raises(ValueError, match=r"expected hx = \(h0, c0\)"):
        lstm(x, Tensor(np.zeros((2, 2, 4), np.float32)))
    with pytest.raises(TypeError, match=r"LSTM\(3, 4, num_layers=2\): the input is float64 "
                                        r"but the weights are float32; convert the input "
                                        r"with x.float\(\)"):
        lstm(Tensor(np.zeros((5, 2, 3))))
    with pytest.raises(TypeError, match="expected a floating-point input, got dtype int64; "
                                        "token ids go through an nn.Embedding"):
        lstm(Tensor(np.zeros((5, 2, 3), dtype=np.int64)))
    with pytest.raises(TypeError, match="the initial cell state c0 is float64 but the input "
                                        "is float32"):
        lstm(x, (Tensor(np.zeros((2, 2, 4), np.float32)), Tensor(np.zeros((2, 2, 4)))))
    with pytest.raises(ValueError, match="GRU: dropout must be a probability in"):
        nn.GRU(3, 4, dropout=1.5)
    with pytest.raises(ValueError, match="LSTM: hidden_size must be a positive integer, got 0"):
        nn.LSTM(3, 0)
    with pytest.raises(ValueError, match=r"GRUCell\(3, 4\) expected input of shape \(N, 3\) "
                                         r"or \(3,\), got shape \(2, 5\)"):
        nn.GRUCell(3, 4)(Tensor(np.zeros((2, 5), np.float32)))
    with pytest.raises(ValueError, match=r"LSTMCell\(3, 4\) expected the hidden state h of "
                                         r"shape \(2, 4\), got shape \(2, 5\)"):
        nn.LSTMCell(3, 4)(Tensor(np.zeros((2, 3), np.float32)),
                          (Tensor(np.zeros((2, 5), np.float32)),
                           Tensor(np.zeros((2, 4), np.float32))))


def test_embedding_errors(rng):
    emb = nn.Embedding(10, 3)
    with pytest.raises(ValueError, match=r"Embedding\(10, 3\): embedding: index 10 is out of "
                                         r"range for a table of 10 rows \(expected 0 <= index "
                                         r"< 10\)"):
        emb(np.array([1, 10]))
    with pytest.raises(ValueError, match="index -1 is out of range"):
        emb(np.array([-1, 2]))
    with pytest.raises(ValueError, match="expected integer indices, got dtype float32; "
                                         "convert token ids"):
        emb(Tensor(np.array([1.0, 2.0], np.float32)))
    with pytest.raises(ValueError, match=r"Embedding: padding_idx must be an integer in "
                                         r"\[-10, 10\), got 10"):
        nn.Embedding(10, 3, padding_idx=10)


@pytest.mark.parametrize("index", [
    np.array([0, 1, 2, 3]),                         # no repeats
    np.array([3, 3, 3, 3, 3, 3, 3, 1, 1, 0, 3]),    # one long run, a short one
    np.random.default_rng(0).zipf(1.3, 500) % 40,   # word-like: a few very frequent
    np.array([], dtype=np.int64),
])
def test_embedding_gradient_adds_repeated_rows_like_add_at(index):
    from cnnlab.kernels.embedding import accumulate_rows

    grad = np.random.default_rng(1).standard_normal((len(index), 6)).astype(np.float32)
    expected = np.zeros((40, 6), np.float32)
    np.add.at(expected, index, grad)
    np.testing.assert_allclose(accumulate_rows(index, grad, 40), expected, rtol=1e-5,
                               atol=1e-5)
