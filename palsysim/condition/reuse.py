"""What is made from a donor photo, kept for the next patient against the same donor (issue 28).

One donor serves many patients: a training set's photos take the donors in turn, the CLI's folder of
patients shares a few, and ComfyUI runs the CODC nodes again with the same donor image and another
patient. The donor's contour (a whole-photo Canny) is most of a condition's own time, so the last few
are kept. A result is reused only for the same donor, compared byte for byte on every use (never
trusted to a hash), under the very same settings; anything else makes it anew.
"""
import threading
from collections import OrderedDict

import numpy as np


class DonorResults:
    """The last few results of make(donor), keyed on the donor photo's bytes, its landmarks' bytes and settings.

    max_items, max_bytes: what is kept at most (a donor's copy plus its result count); a donor larger
    than max_bytes alone is made every time, never kept. Results come back read-only: callers share them.
    """

    def __init__(self, max_items=8, max_bytes=64 << 20):
        self.max_items, self.max_bytes = max_items, max_bytes
        self._kept = OrderedDict()  # key -> (donor copy, result), least recently used first
        self._lock = threading.Lock()

    def get(self, image, xy, settings, make):
        """make() for donor image (H, W, C) with landmarks xy (N, 2+) under settings (hashable), or the kept one."""
        image, xy = np.asarray(image), np.ascontiguousarray(xy)
        key = (image.shape, image.dtype.str, xy.shape, xy.dtype.str, xy.tobytes(), settings)
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None and np.array_equal(kept[0], image):
                self._kept.move_to_end(key)
                return kept[1]
        result = make()
        result.setflags(write=False)
        if image.nbytes + result.nbytes <= self.max_bytes:
            with self._lock:
                self._kept[key] = (image.copy(), result)
                self._kept.move_to_end(key)
                while len(self._kept) > self.max_items or self._bytes() > self.max_bytes:
                    self._kept.popitem(last=False)
        return result

    def clear(self):
        with self._lock:
            self._kept.clear()

    def __len__(self):
        return len(self._kept)

    def _bytes(self):
        return sum(image.nbytes + result.nbytes for image, result in self._kept.values())
