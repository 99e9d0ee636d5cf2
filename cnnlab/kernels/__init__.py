"""Raw array routines the ops call. Nothing here knows about Tensor: this is the speed layer.

Convolution and pooling work on channels-last (NHWC) memory: the GEMM of im2col then writes
its output already in that layout, and a channels-last array viewed as NCHW costs nothing.
"""

from cnnlab import _checkout  # noqa: F401  (a folder named cnnlab hiding the package)
