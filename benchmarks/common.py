"""Shared helpers: camera-like test images, timing medians, and result files."""

from __future__ import annotations

import io
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

RESULTS = Path(__file__).resolve().parent / "results"


def camera_like(width: int, height: int, seed: int = 0) -> Image.Image:
    """A product-on-seamless photo with sensor noise and soft edges, like a camera JPEG."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(236, 205, height, dtype=np.float32)[:, None, None]
    img = np.repeat(np.repeat(ramp, width, axis=1), 3, axis=2)
    subject = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(subject)
    cx, cy = width // 2, height // 2
    draw.rounded_rectangle(
        (cx - width * 0.18, cy - height * 0.3, cx + width * 0.18, cy + height * 0.35),
        radius=width // 30,
        fill=255,
    )
    draw.ellipse(
        (cx - width * 0.08, cy - height * 0.42, cx + width * 0.08, cy - height * 0.22), fill=255
    )
    alpha = (
        np.asarray(
            subject.filter(ImageFilter.GaussianBlur(max(1, width // 1000))), dtype=np.float32
        )[..., None]
        / 255
    )
    colour = np.array([40 + 30 * (seed % 5), 60, 150 - 20 * (seed % 4)], dtype=np.float32)
    shade = np.linspace(1.2, 0.7, width, dtype=np.float32)[None, :, None]
    img = img * (1 - alpha) + colour * shade * alpha
    img += rng.normal(0, 2.0, size=img.shape).astype(np.float32)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def write_jpegs(folder: Path, count: int, size: tuple[int, int], quality: int = 90) -> list[Path]:
    """``count`` camera-like JPEGs (a few distinct renders, reused) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    renders = []
    for seed in range(min(count, 8)):
        buf = io.BytesIO()
        camera_like(*size, seed=seed).save(buf, format="JPEG", quality=quality)
        renders.append(buf.getvalue())
    paths = []
    for index in range(count):
        path = folder / f"BENCH-{index:05d}_front.jpg"
        # Each file differs (a trailing comment) so content hashes are unique, as in a real shoot.
        path.write_bytes(renders[index % len(renders)] + f"cutline-bench-{index}".encode())
        paths.append(path)
    return paths


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """Wall seconds of one call and its result."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def median(values: list[float]) -> float:
    """Median of a list of timings."""
    return statistics.median(values)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_result(name: str, data: dict[str, Any], markdown: str) -> Path:
    """Write results/<name>.json and results/<name>.md; return the markdown path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, "machine": machine(), **data}
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2))
    md = RESULTS / f"{name}.md"
    md.write_text(markdown + "\n")
    return md


def bench_settings(work: Path, name: str, port: str, postgres: bool = False, **extra: str) -> Any:
    """Point Cutline at a fresh data root under ``work`` (quiet logs, no sign-off request, the
    local model home), optionally a fresh PostgreSQL database for the server; fetch u2netp and
    return the settings. ``extra`` are more environment variables for this benchmark."""
    os.environ.update(
        CUTLINE_DATA_ROOT=str(work / "data"),
        CUTLINE_SIGNOFF_DEPLOYMENT="",  # measure processing, not the contact sheet after it
        CUTLINE_SERVER_PORT=os.environ.get("CUTLINE_BENCH_PORT", port),
        PREFECT_LOGGING_LEVEL="WARNING",
        PREFECT_LOGGING_TO_API_ENABLED="false",
        **extra,
    )
    os.environ.setdefault("CUTLINE_MODEL_HOME", str(Path.home() / ".cutline" / "models"))
    if postgres:
        from benchmarks.postgres import fresh_database_url

        os.environ["CUTLINE_SERVER_DATABASE_URL"] = fresh_database_url(f"cutline_bench_{name}")
    from cutline.base.settings import reload_settings
    from cutline.imaging import model_store

    settings = reload_settings()
    model_store.fetch("u2netp", settings.resolved_model_home)
    return settings


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process and its reaped children) from /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after the command name, which may hold spaces
    ticks = os.sysconf("SC_CLK_TCK")
    # fields[1] is the ppid; utime, stime, cutime, cstime are fields 14-17 of the whole line.
    return int(fields[1]), sum(int(v) for v in fields[11:15]) / ticks


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by a process, the children it has reaped, and its live
    descendants (a worker and the flow-run processes it starts)."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _proc_stat(int(entry.name))) is not None:
            parents[int(entry.name)], cpu[int(entry.name)] = stat
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += cpu.get(current, 0.0)
        todo += [child for child, parent in parents.items() if parent == current]
    return total


def idle_cpu_rate(pids: list[int], seconds: float) -> float:
    """CPU seconds per second that the process trees of ``pids`` use over ``seconds`` of
    waiting (what a server costs while nothing is asked of it)."""
    started, cpu = time.perf_counter(), sum(tree_cpu_seconds(pid) for pid in pids)
    time.sleep(seconds)
    used = sum(tree_cpu_seconds(pid) for pid in pids) - cpu
    return used / (time.perf_counter() - started)


def live_children(pid: int) -> list[int]:
    """The live child processes of ``pid``."""
    children = []
    for entry in Path("/proc").iterdir():
        stat = _proc_stat(int(entry.name)) if entry.name.isdigit() else None
        if stat is not None and stat[0] == pid:
            children.append(int(entry.name))
    return children


def write_manifest(folder: Path, paths: list[Path], review_share: float) -> Path:
    """A manifest routing about ``review_share`` of the images to the review lane (category
    glassware: a senior retoucher checks every one) and the rest to apparel."""
    lines = ["filename,sku,category"]
    for index, path in enumerate(paths):
        review = (index * review_share) % 1.0 + review_share > 1.0 - 1e-9
        sku = path.stem.split("_")[0]
        lines.append(f"{path.name},{sku},{'glassware' if review else 'apparel'}")
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def waiting_reviews(job_id: str) -> int:
    """How many review runs of ``job_id`` wait for a retoucher (Suspended) on this process's
    Prefect API."""
    from cutline.base.settings import get_settings
    from cutline.services.review_queue import list_reviews

    settings = get_settings()
    return sum(1 for e in list_reviews(settings, settings.ui_url, job_id) if e.state == "Suspended")
