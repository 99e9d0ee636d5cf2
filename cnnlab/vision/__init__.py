"""Box arithmetic and decoding helpers for detection, as in ``torchvision.ops``.

Every function takes cnnlab Tensors or NumPy arrays (or nested lists) and returns Tensors;
indices come back as int64 Tensors.
"""

from cnnlab.vision.boxes import batched_nms, box_area, box_convert, box_iou, nms
from cnnlab.vision.heatmap import Peaks, heatmap_peaks

__all__ = ["Peaks", "batched_nms", "box_area", "box_convert", "box_iou", "heatmap_peaks", "nms"]
