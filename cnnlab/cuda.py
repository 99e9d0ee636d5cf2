"""cnnlab computes on the CPU; this answers PyTorch code that asks about CUDA."""


def is_available() -> bool:
    """Always False: cnnlab has no GPU backend."""
    return False


def device_count() -> int:
    return 0
