"""Differentiable ops: each a :class:`~cnnlab.tensor.Function` with a hand-written backward."""
