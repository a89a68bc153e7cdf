"""One rembg/onnxruntime session per process, reused for every image."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from cutline.base.errors import ModelError
from cutline.imaging import model_store

_lock = threading.Lock()
_sessions: dict[tuple[str, str, int], object] = {}


def get_session(
    model: str, home: Path, threads: int = 0, providers: Sequence[str] = ()
):  # -> rembg BaseSession
    """The process's session for ``model``: created (and its file verified) once, then reused.
    ``providers`` are onnxruntime's execution providers in order (empty: its default)."""
    key = (model, str(home), threads, tuple(providers))
    session = _sessions.get(key)
    if session is not None:
        return session
    with _lock:
        session = _sessions.get(key)
        if session is None:
            session = _create_session(model, home, threads, tuple(providers))
            _sessions[key] = session
    return session


def _create_session(model: str, home: Path, threads: int, providers: tuple[str, ...]):
    import onnxruntime as ort
    from rembg import new_session

    spec = model_store.parse_model(model)
    path = model_store.ensure(spec, home)
    if path is None:
        return ThresholdBackend()
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    kwargs: dict[str, object] = {"model_path": str(path)} if spec.onnx_path else {}
    if providers:
        kwargs["providers"] = list(providers)
    try:
        return new_session(spec.session_name, sess_opts=opts, **kwargs)
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise ModelError(
            f"Model '{spec.label}' at {path} could not be loaded by onnxruntime ({exc}).",
            hint=f"Run `cutline models fetch {spec.name} --force`, or check the ONNX file.",
        ) from exc


class ThresholdBackend:
    """NOT an AI model: foreground = pixels far in colour from the frame's border.

    Only for scale benchmarks (CUTLINE_MODEL=bench-threshold-not-ai), where it stands in
    for the model so 20,000 images go through the orchestration in minutes.
    """

    def predict(self, image: Image.Image) -> list[Image.Image]:
        """A soft mask from the distance to the median border colour."""
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
        border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
        distance = np.abs(rgb - np.median(border, axis=0)).max(axis=2)
        alpha = np.clip((distance - 12.0) / 24.0, 0.0, 1.0)
        return [Image.fromarray((alpha * 255).astype(np.uint8), mode="L")]


def loaded_session_count() -> int:
    """How many model sessions this process holds (for tests and diagnostics)."""
    return len(_sessions)


def predict_alpha(session, image: Image.Image) -> np.ndarray:
    """The model's soft alpha for ``image`` as float32 in [0, 1], at the image's size."""
    mask = session.predict(image)[0]
    return np.asarray(mask.convert("L"), dtype=np.float32) / 255.0


def second_view_alpha(session, image: Image.Image, pad: float = 0.15) -> np.ndarray:
    """The model's alpha for the image framed differently (padded by ``pad`` of its long side
    with its median colour, so the subject appears smaller to the model), cropped back to
    the image. Its agreement with the first view is the confidence score's strongest signal."""
    rgb = image.convert("RGB")
    border = round(pad * max(rgb.size))
    fill = tuple(int(v) for v in np.median(np.asarray(rgb).reshape(-1, 3), axis=0))
    framed = ImageOps.expand(rgb, border=border, fill=fill)
    alpha = predict_alpha(session, framed)
    return alpha[border : border + rgb.height, border : border + rgb.width]
