"""Images decoded at the model's size, kept briefly so the cutout need not decode them again.

Ingest decodes every image at the model's input size to prove it decodes; the cutout stage
needs exactly that decode a moment later (same bytes, same arguments, so the same pixels).
Keeping the last few per process saves a decode and a resize per image. The store is small
and bounded: an image whose cutout runs elsewhere (another worker) or much later is decoded
again there, as before.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from PIL import Image

from cutline.imaging.codec import ImageInfo

_MAX_BYTES = 160 * 1024 * 1024  # about 70 model-size images: two batches in flight

_lock = threading.Lock()
_kept: OrderedDict[tuple, tuple[Image.Image, ImageInfo]] = OrderedDict()
_size = 0


def keep(key: tuple, rgb: Image.Image, info: ImageInfo) -> None:
    """Keep a decode under ``key`` (content hash and decode arguments), dropping the oldest
    when the store is full."""
    global _size
    nbytes = rgb.width * rgb.height * len(rgb.getbands())
    if nbytes > _MAX_BYTES:
        return
    with _lock:
        if key in _kept:
            return
        _kept[key] = (rgb, info)
        _size += nbytes
        while _size > _MAX_BYTES:
            _, (old, _) = _kept.popitem(last=False)
            _size -= old.width * old.height * len(old.getbands())


def take(key: tuple) -> tuple[Image.Image, ImageInfo] | None:
    """The decode kept under ``key``, removed from the store (each is used once), or None."""
    global _size
    with _lock:
        found = _kept.pop(key, None)
        if found is not None:
            _size -= found[0].width * found[0].height * len(found[0].getbands())
        return found
