"""The one Canny edge detector of PalsySim: training conditions and inference conditions alike.

The default convention is the one the stock control_sd15_canny was trained on (lllyasviel's
annotator, annotator/canny): cv2.Canny on the 8-bit RGB image, Sobel 3x3 per channel with the
strongest channel's gradient kept at each pixel, L1 magnitude (|dx| + |dy|), thresholds 100/200, no
blur. Conditions made otherwise are out of the distribution that net saw.

The option "grey_l2": ITU-R 601 luma rounded to 8 bits, L2 magnitude. An optional Gaussian blur
(rounded to 8 bits again) applies to either. Thresholds are strict and in OpenCV's units
(gradient magnitude of an 8-bit image).

- arrays, and tensors on the CPU: OpenCV (about 1 ms grey, 3 ms RGB at 512x512 on these CPUs).
- tensors on a GPU: OpenCV after a copy to the CPU for "rgb_l1"; kornia, which stays on the device,
  for "grey_l2" (kornia has neither per-channel gradients nor the L1 norm). kornia's edges match
  OpenCV's to within the tolerance stated in tests/test_codc.py (the two differ only in how a
  gradient direction is rounded to 45 degrees); its hysteresis loop costs 260-650 ms on a CPU, so
  it is never the CPU path.
"""
import cv2
import numpy as np

from ..base.errors import InputError
from ..base.photos import to_rgb_uint8

LOW, HIGH = 100.0, 200.0
ANNOTATOR = "rgb_l1"  # lllyasviel's annotator for control_sd15_canny
CONVENTIONS = (ANNOTATOR, "grey_l2")


def check_edge_settings(low_threshold, high_threshold, blur_sigma, convention=ANNOTATOR):
    if convention not in CONVENTIONS:
        raise InputError(f"unknown Canny convention {convention!r}: use {' or '.join(CONVENTIONS)} "
                         f"({ANNOTATOR} is how the stock canny ControlNet was trained)")
    if not (0 < low_threshold <= high_threshold):
        raise InputError(f"Canny thresholds must satisfy 0 < low <= high; got low {low_threshold}, "
                         f"high {high_threshold}: raise high or lower low")
    if blur_sigma < 0:
        raise InputError(f"blur_sigma must be 0 (no blur) or positive; got {blur_sigma}")


def _ksize(sigma):
    return 2 * int(np.ceil(3.0 * sigma)) + 1


def canny_array(image, low_threshold=LOW, high_threshold=HIGH, blur_sigma=0.0, convention=ANNOTATOR):
    """Photo (H, W) grey or (H, W, C) RGB(A), uint8 or float 0..1 -> (H, W) uint8 edges, 0 or 255."""
    check_edge_settings(low_threshold, high_threshold, blur_sigma, convention)
    a = np.asarray(image)
    if a.ndim == 2 and a.dtype == np.uint8:
        x = a
    else:
        x = to_rgb_uint8(a)
        if convention == "grey_l2":
            x = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)
    if blur_sigma > 0:
        k = _ksize(blur_sigma)
        x = cv2.GaussianBlur(x, (k, k), blur_sigma, borderType=cv2.BORDER_REFLECT_101)
    if x.ndim == 3 and convention == ANNOTATOR:
        return _rgb_l1_canny(x, float(low_threshold), float(high_threshold))
    return cv2.Canny(x, float(low_threshold), float(high_threshold), L2gradient=convention == "grey_l2")


def _rgb_l1_canny(rgb, low_threshold, high_threshold):
    """cv2.Canny(rgb, low, high) to the byte, in about 0.4 of its time.

    OpenCV keeps at each pixel the gradient of the channel with the largest |dx| + |dy| (the first
    on a tie) and picks it in a per-pixel loop, most of its time on a colour image; here the same
    pick is made with whole-array operations and the picked gradients go to Canny's (dx, dy) form,
    which runs the very same suppression and hysteresis (tests/test_gpu_bench.py compares them).
    """
    channels = cv2.split(rgb)
    gx = gy = best = None
    for i, channel in enumerate(channels):
        # spatialGradient is the same 3x3 Sobel pair as two cv2.Sobel calls, in one pass over the channel
        dx, dy = cv2.spatialGradient(channel, borderType=cv2.BORDER_REPLICATE)
        magnitude = np.abs(dx)
        magnitude += np.abs(dy)  # at most 2040: int16 holds it
        if best is None:
            gx, gy, best = dx, dy, magnitude
            continue
        larger = cv2.compare(magnitude, best, cv2.CMP_GT)
        cv2.copyTo(dx, larger, gx)
        cv2.copyTo(dy, larger, gy)
        if i + 1 < len(channels):  # the last channel's magnitude is compared with nothing after it
            cv2.copyTo(magnitude, larger, best)
    return cv2.Canny(gx, gy, low_threshold, high_threshold, L2gradient=False)


def canny_tensor(images, low_threshold=LOW, high_threshold=HIGH, blur_sigma=0.0, method="auto", convention=ANNOTATOR):
    """Tensor (B, C, H, W), C = 1 or 3, float 0..1 -> (B, 1, H, W) float edges, 0 or 1, same device.

    method: "auto" (kornia for GPU tensors with "grey_l2", else OpenCV), "opencv" or "kornia".
    """
    import torch
    check_edge_settings(low_threshold, high_threshold, blur_sigma, convention)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise InputError(f"edge input has shape {tuple(images.shape)}; expected (B, C, H, W) with C = 1 or 3")
    if method == "auto":
        method = "kornia" if images.device.type != "cpu" and convention == "grey_l2" else "opencv"
    if method == "opencv":
        out = [canny_array(im.detach().float().cpu().movedim(0, -1).numpy(), low_threshold, high_threshold,
                           blur_sigma, convention) for im in images]
        return torch.from_numpy(np.stack(out)[:, None].astype(np.float32) / 255.0).to(images.device)
    if method != "kornia":
        raise InputError(f"unknown edge method {method!r}: use auto, opencv or kornia")
    if convention != "grey_l2":
        raise InputError(f"kornia computes the grey_l2 convention only, not {convention!r}: use method opencv "
                         f"or auto, or convention grey_l2")
    from kornia.filters import canny, gaussian_blur2d
    x = images.float().clamp(0, 1)
    if x.shape[1] == 3:
        x = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    # Rounding to 8 bits where OpenCV holds uint8 makes both paths see the same grey levels.
    x = torch.round(x * 255.0)
    if blur_sigma > 0:
        k = _ksize(blur_sigma)
        x = torch.round(gaussian_blur2d(x, (k, k), (blur_sigma, blur_sigma), border_type="reflect"))
    _, edges = canny(x / 255.0, low_threshold / 255.0, high_threshold / 255.0, kernel_size=1)
    return edges


def canny(image, low_threshold=LOW, high_threshold=HIGH, blur_sigma=0.0, method="auto", convention=ANNOTATOR):
    """The edge function: numpy photo -> (H, W) uint8 0/255 (OpenCV); torch (B, C, H, W) -> (B, 1, H, W) 0/1.

    low_threshold, high_threshold: hysteresis thresholds on the Sobel magnitude (strict: weak above
    low, strong above high). blur_sigma: Gaussian blur before the gradient, 0 for none (the
    annotator's). convention: "rgb_l1" (the annotator's, default) or "grey_l2" (see the module).
    """
    if isinstance(image, np.ndarray):
        if method == "kornia":
            import torch
            a = to_rgb_uint8(image)
            t = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255.0
            edges = canny_tensor(t, low_threshold, high_threshold, blur_sigma, "kornia", convention)
            return (edges[0, 0].numpy() * 255).astype(np.uint8)
        return canny_array(image, low_threshold, high_threshold, blur_sigma, convention)
    return canny_tensor(image, low_threshold, high_threshold, blur_sigma, method, convention)
