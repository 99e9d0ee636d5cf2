"""Collection settings for the doctests in cnnlab/ (tests/ has its own conftest.py)."""

collect_ignore = []
try:
    import onnx  # noqa: F401
except ImportError:  # the onnx extra is not installed: its examples cannot run
    collect_ignore += ["cnnlab/onnx/export.py", "cnnlab/onnx/load.py"]
