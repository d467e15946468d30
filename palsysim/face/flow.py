"""Dense optical flow between two frames (OpenCV's Farneback), shared by the flicker measure (on generated
frames) and the flow-guided cross-frame attention (on a video's conditions)."""
import cv2

from ..base.photos import to_rgb_uint8


def grey(frame):
    """(H, W) or (H, W, 3) image, 0..1 float or uint8 -> (H, W) uint8 grey."""
    rgb = to_rgb_uint8(frame)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def dense_flow(a, b):
    """Farneback flow from grey frame a to grey frame b: (H, W, 2) float32 pixels, a's pixel p shows what b
    shows at p + flow[p]."""
    return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
