"""Side-by-side speed of cnnlab, PyTorch and a textbook NumPy CNN.

Run ``python -m benchmarks.run --help``. Each framework runs in its own process with the same
thread count, the same initial weights and the same data batch; see ``benchmarks/run.py``.
"""
