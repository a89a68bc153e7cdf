"""PNG encoding of full-resolution cutouts and masks, about twice as fast as Pillow's.

Pillow tries all five PNG filters on every row and keeps the best (adaptive filtering); on a
24-megapixel RGBA cutout that choice alone costs more than the compression (0.9 s of 1.5 s at
level 1 on this project's 2-core machine). Camera photographs and soft masks compress about as
well with the "Up" filter on every row (each row minus the one above: one numpy subtraction), so
this writer uses it and zlib at the caller's level: the same pixels, files within a few percent
of Pillow's size (on the 22 real photos of the dev set 2% smaller), in about half the time.
Anything but 8-bit L, RGB or RGBA goes to Pillow.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPES = {"L": 0, "RGB": 2, "RGBA": 6}
_UP_FILTER = 2
_IDAT_BYTES = 1 << 20  # pixel data is split into chunks of this size, as encoders usually do
_BAND_ROWS = 64  # rows filtered and compressed at once


def encode_png(
    image: Image.Image, compress_level: int, itxt: dict[str, str] | None = None
) -> bytes:
    """``image`` as PNG (zlib ``compress_level`` 0-9), with each ``itxt`` entry as an
    uncompressed international text chunk (e.g. XMP under "XML:com.adobe.xmp")."""
    for key in itxt or {}:
        if not 0 < len(key) < 80 or "\0" in key or key != key.strip() or not key.isascii():
            raise ValueError(
                f"{key!r} is not a PNG text keyword (1-79 ASCII characters, no NUL, no outer spaces)."
            )
    if image.mode not in _COLOUR_TYPES or 0 in image.size:
        return _pillow_png(image, compress_level, itxt)
    header = struct.pack(
        ">IIBBBBB", image.width, image.height, 8, _COLOUR_TYPES[image.mode], 0, 0, 0
    )
    parts = [_SIGNATURE, _chunk(b"IHDR", header)]
    for key, text in (itxt or {}).items():
        parts.append(_chunk(b"iTXt", key.encode("ascii") + b"\0\0\0\0\0" + text.encode("utf-8")))
    view = memoryview(_filtered_and_compressed(image, compress_level))
    parts.extend(
        _chunk(b"IDAT", view[start : start + _IDAT_BYTES])
        for start in range(0, len(view), _IDAT_BYTES)
    )
    parts.append(_chunk(b"IEND", b""))
    return b"".join(parts)


def _filtered_and_compressed(image: Image.Image, compress_level: int) -> bytes:
    """The zlib stream of every row, each prefixed by the Up filter's type byte and holding
    its difference to the row above, taken a band of rows at a time (memory stays a few
    megabytes above the image's own, whatever its size)."""
    compressor = zlib.compressobj(compress_level)
    compressed = []
    above: np.ndarray | None = None  # the last row of the band before (None: zeros)
    for top in range(0, image.height, _BAND_ROWS):
        box = (0, top, image.width, min(image.height, top + _BAND_ROWS))
        band = np.asarray(image.crop(box)).reshape(box[3] - top, -1)
        rows = np.empty((band.shape[0], band.shape[1] + 1), dtype=np.uint8)
        rows[:, 0] = _UP_FILTER
        if above is None:
            rows[0, 1:] = band[0]
        else:
            np.subtract(band[0], above, out=rows[0, 1:])  # modulo 256, as the filter is defined
        np.subtract(band[1:], band[:-1], out=rows[1:, 1:])
        above = band[-1]
        compressed.append(compressor.compress(rows))
    compressed.append(compressor.flush())
    return b"".join(compressed)


def _chunk(kind: bytes, data: bytes | memoryview) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return b"".join((struct.pack(">I", len(data)), kind, data, struct.pack(">I", crc)))


def _pillow_png(image: Image.Image, compress_level: int, itxt: dict[str, str] | None) -> bytes:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, text in (itxt or {}).items():
        info.add_itxt(key, text, zip=False)
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info, compress_level=compress_level)
    return buf.getvalue()
