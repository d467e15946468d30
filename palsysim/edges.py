"""The one Canny edge detector of PalsySim: training conditions and inference conditions alike.

Two paths, one definition: grey = ITU-R 601 luma rounded to 8 bits, an optional Gaussian blur
(rounded to 8 bits again), Sobel 3x3 gradients, L2 magnitude, non-maximum suppression and 8-connected
hysteresis with strict thresholds in OpenCV's units (gradient magnitude of an 8-bit image, so the
ControlNet convention "100, 200" means what it always meant, bar the L2 norm).

- arrays, and tensors on the CPU: OpenCV (about 1 ms at 512x512 on these CPUs).
- tensors on a GPU: kornia, which stays on the device (its hysteresis loop costs 260-650 ms on a
  CPU, so it is never the CPU path). Its edges match OpenCV's to within the tolerance stated in
  tests/test_codc.py (the two differ only in how a gradient direction is rounded to 45 degrees).
"""
import cv2
import numpy as np

from .images import InputError, to_rgb_uint8

LOW, HIGH = 100.0, 200.0


def _check(low_threshold, high_threshold, blur_sigma):
    if not (0 < low_threshold <= high_threshold):
        raise InputError(f"Canny thresholds must satisfy 0 < low <= high; got low {low_threshold}, "
                         f"high {high_threshold}: raise high or lower low")
    if blur_sigma < 0:
        raise InputError(f"blur_sigma must be 0 (no blur) or positive; got {blur_sigma}")


def _ksize(sigma):
    return 2 * int(np.ceil(3.0 * sigma)) + 1


def canny_array(image, low_threshold=LOW, high_threshold=HIGH, blur_sigma=0.0):
    """Photo (H, W) grey or (H, W, C) RGB(A), uint8 or float 0..1 -> (H, W) uint8 edges, 0 or 255."""
    _check(low_threshold, high_threshold, blur_sigma)
    a = np.asarray(image)
    grey = a if (a.ndim == 2 and a.dtype == np.uint8) else cv2.cvtColor(to_rgb_uint8(a), cv2.COLOR_RGB2GRAY)
    if blur_sigma > 0:
        k = _ksize(blur_sigma)
        grey = cv2.GaussianBlur(grey, (k, k), blur_sigma, borderType=cv2.BORDER_REFLECT_101)
    return cv2.Canny(grey, float(low_threshold), float(high_threshold), L2gradient=True)


def canny_tensor(images, low_threshold=LOW, high_threshold=HIGH, blur_sigma=0.0, method="auto"):
    """Tensor (B, C, H, W), C = 1 or 3, float 0..1 -> (B, 1, H, W) float edges, 0 or 1, same device.

    method: "auto" (OpenCV for CPU tensors, kornia for GPU ones), "opencv" or "kornia".
    """
    import torch
    _check(low_threshold, high_threshold, blur_sigma)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise InputError(f"edge input has shape {tuple(images.shape)}; expected (B, C, H, W) with C = 1 or 3")
    if method == "auto":
        method = "opencv" if images.device.type == "cpu" else "kornia"
    if method == "opencv":
        out = [canny_array(im.detach().float().cpu().movedim(0, -1).numpy(), low_threshold, high_threshold, blur_sigma)
               for im in images]
        return torch.from_numpy(np.stack(out)[:, None].astype(np.float32) / 255.0).to(images.device)
    if method != "kornia":
        raise InputError(f"unknown edge method {method!r}: use auto, opencv or kornia")
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


def canny(image, low_threshold=LOW, high_threshold=HIGH, blur_sigma=0.0, method="auto"):
    """The edge function: numpy photo -> (H, W) uint8 0/255 (OpenCV); torch (B, C, H, W) -> (B, 1, H, W) 0/1.

    low_threshold, high_threshold: hysteresis thresholds on the L2 Sobel magnitude of the 8-bit grey
    image (strict: weak above low, strong above high). blur_sigma: Gaussian blur before the
    gradient, 0 for none (the ControlNet annotator's convention).
    """
    if isinstance(image, np.ndarray):
        if method == "kornia":
            import torch
            a = to_rgb_uint8(image)
            t = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255.0
            return (canny_tensor(t, low_threshold, high_threshold, blur_sigma, "kornia")[0, 0].numpy() * 255).astype(np.uint8)
        return canny_array(image, low_threshold, high_threshold, blur_sigma)
    return canny_tensor(image, low_threshold, high_threshold, blur_sigma, method)
