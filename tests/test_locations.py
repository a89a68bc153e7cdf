"""Paths and URIs given to a run (UI form, CLI, deployment) stay inside the studio's storage:
no '..', no schemes outside the allow-list, and inside allowed_roots when they are set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cutline.base.errors import ConfigError
from cutline.base.settings import CutlineSettings
from cutline.domain.locations import check_location


@pytest.fixture
def confined(tmp_path: Path) -> CutlineSettings:
    (tmp_path / "shoots" / "SS26").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    return CutlineSettings(allowed_roots=[str(tmp_path / "shoots"), "s3://studio-shoots/"])


@pytest.mark.parametrize(
    "value",
    [
        "../etc/passwd",
        "/mnt/shoots/SS26/../../../etc",
        "s3://studio-shoots/SS26/../../other-bucket",
        "C:\\shoots\\..\\windows",
    ],
)
def test_dot_dot_is_refused_everywhere(value: str):
    with pytest.raises(ConfigError, match=r"contains '\.\.'"):
        check_location(value, "shoot", CutlineSettings())


@pytest.mark.parametrize(
    ("value", "scheme"),
    [
        ("http://attacker.example/shoot", "http"),
        ("ftp://host/shoot", "ftp"),
        ("memory://shoot", "memory"),
        ("simplecache::s3://studio-shoots/SS26", "simplecache::s3"),
        ("ssh://host/etc", "ssh"),
    ],
)
def test_schemes_outside_the_allow_list_are_refused(value: str, scheme: str):
    with pytest.raises(ConfigError) as info:
        check_location(value, "manifest", CutlineSettings())
    assert f"scheme '{scheme}'" in str(info.value) and "CUTLINE_ALLOWED_SCHEMES" in str(info.value)


def test_control_characters_are_refused():
    with pytest.raises(ConfigError, match="control characters"):
        check_location("/mnt/shoots/SS26\n/etc", "shoot", CutlineSettings())


def test_without_roots_any_plain_path_or_s3_uri_is_accepted(tmp_path: Path):
    settings = CutlineSettings()
    assert check_location(str(tmp_path), "shoot", settings) == str(tmp_path)
    assert check_location("s3://any-bucket/x", "shoot", settings) == "s3://any-bucket/x"


def test_roots_confine_local_paths_and_uris(confined: CutlineSettings, tmp_path: Path):
    check_location(str(tmp_path / "shoots" / "SS26"), "shoot", confined)
    check_location("s3://studio-shoots/SS26", "shoot", confined)
    for outside in (
        str(tmp_path / "elsewhere"),
        str(tmp_path / "shoots-evil"),  # a sibling whose name starts like a root
        "s3://studio-shoots-evil/SS26",
        "s3://other/SS26",
    ):
        with pytest.raises(ConfigError, match="outside the folders this studio allows"):
            check_location(outside, "shoot", confined)


def test_a_symlink_inside_a_root_that_points_outside_is_refused(
    confined: CutlineSettings, tmp_path: Path
):
    link = tmp_path / "shoots" / "sneaky"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="outside the folders"):
        check_location(str(link), "shoot", confined)


@pytest.mark.slow
def test_process_shoot_refuses_bad_parameters_before_reading_anything(
    prefect_server, model_home, tmp_path: Path, override_settings
):
    from flows.process_shoot import process_shoot

    shoot = tmp_path / "shoots" / "SS26"
    shoot.mkdir(parents=True)
    (shoot / "a.jpg").write_bytes(b"x")
    out = tmp_path / "out"
    cases = [
        ({"output_root": f"{out}/../../escape"}, "contains '..'"),
        ({"output_root": "http://attacker.example/drop"}, "scheme 'http'"),
        ({"manifest": "ftp://host/manifest.csv", "output_root": str(out)}, "scheme 'ftp'"),
    ]
    for params, expected in cases:
        state = process_shoot(shoot=str(shoot), job_id="LOC-1", return_state=True, **params)
        assert state.is_failed()
        with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
            state.result()
    override_settings(allowed_roots=json.dumps([str(tmp_path / "shoots"), str(out)]))
    state = process_shoot(
        shoot=str(tmp_path), job_id="LOC-2", output_root=str(out), return_state=True
    )
    with pytest.raises(ConfigError, match="outside the folders this studio allows"):
        state.result()
    assert not out.exists() and not (tmp_path / "escape").exists()


def test_a_retouched_file_outside_the_roots_is_refused_in_the_review_form(
    confined: CutlineSettings, tmp_path: Path, override_settings
):
    from cutline.domain.items import ImageItem
    from tasks.review import ReviewDecision, validate_decision

    override_settings(allowed_roots=json.dumps(confined.allowed_roots))
    item = ImageItem(index=0, source="/s/a.jpg", source_name="a.jpg", image_id="a")
    secret = tmp_path / "elsewhere" / "id_rsa.png"
    secret.write_bytes(b"not for retouchers")
    for path, expected in (
        (str(secret), "outside the folders"),
        ("http://attacker.example/mask.png", "scheme 'http'"),
    ):
        problem = validate_decision(
            ReviewDecision(decision="replace", retouched_file=path, retoucher="Ana"), item
        )
        assert expected in problem


@pytest.mark.parametrize("inside", ["out", "out/renders", "."])
def test_an_output_root_inside_the_shoot_is_refused(tmp_path: Path, inside: str):
    from flows.process_shoot import refuse_output_inside_shoot

    shoot = tmp_path / "shoot"
    shoot.mkdir()
    with pytest.raises(ConfigError) as info:
        refuse_output_inside_shoot(str(shoot), str(shoot / inside))
    assert "inside the shoot folder" in str(info.value)
    # Next to the shoot, or in a folder that only starts with the same name, is fine.
    refuse_output_inside_shoot(str(shoot), str(tmp_path / "out"))
    refuse_output_inside_shoot(str(shoot), str(tmp_path / "shoot-out"))


def test_an_output_root_reaching_the_shoot_through_a_symlink_is_refused(tmp_path: Path):
    from flows.process_shoot import refuse_output_inside_shoot

    shoot = tmp_path / "shoot"
    (shoot / "renders").mkdir(parents=True)
    (tmp_path / "link").symlink_to(shoot / "renders")
    with pytest.raises(ConfigError):
        refuse_output_inside_shoot(str(shoot), str(tmp_path / "link"))


@pytest.mark.slow
@pytest.mark.timeout(300)  # a FIFO that is opened blocks for ever: fail fast instead
def test_a_link_out_of_the_roots_and_a_fifo_each_fail_alone(
    prefect_server, model_home, tmp_path: Path, override_settings
):
    import os
    import shutil

    from cutline.imaging.samples import DEFAULT_SAMPLES, write_sample_shoot
    from cutline.records.ledger import read_ledger
    from flows.process_shoot import process_shoot

    shoot, out = tmp_path / "shoots" / "SS26", tmp_path / "out"
    write_sample_shoot(shoot, DEFAULT_SAMPLES[:1], size=(320, 240))
    outside = tmp_path / "elsewhere" / "private.jpg"
    outside.parent.mkdir()
    shutil.copy(shoot / DEFAULT_SAMPLES[0].filename, outside)
    (shoot / "linked.jpg").symlink_to(outside)  # inside the shoot, pointing out of the roots
    os.mkfifo(shoot / "pipe.jpg")  # opening it would block the run
    override_settings(
        allowed_roots=json.dumps([str(tmp_path / "shoots"), str(out)]),
        catalog_dir=str(tmp_path / "catalog"),
    )
    summary = process_shoot(
        shoot=str(shoot), job_id="ESC-1", manifest=str(shoot / "manifest.csv"), output_root=str(out)
    )
    rows = {r["source_name"]: r for r in read_ledger(summary.ledger)}
    assert rows["linked.jpg"]["lane"] == "failed" and rows["linked.jpg"]["png"] == ""
    assert "outside the folders this studio allows" in rows["linked.jpg"]["error"]
    assert rows["pipe.jpg"]["lane"] == "failed"
    assert "is a FIFO, not a regular file" in rows["pipe.jpg"]["error"]
    assert rows[DEFAULT_SAMPLES[0].filename]["lane"] in {"auto", "review"}
    assert not list((out / "ESC-1").rglob("linked*.png"))  # nothing made from the outside file


@pytest.mark.parametrize("device", ["/dev/zero", "fifo"])
def test_a_device_or_fifo_as_retouched_file_is_refused_without_reading_it(
    tmp_path: Path, device: str
):
    import os

    from cutline.domain.items import ImageItem
    from tasks.review import ReviewDecision, validate_decision

    if device == "fifo":
        device = str(tmp_path / "mask.png")
        os.mkfifo(device)  # reading it would wait for a writer for ever
    item = ImageItem(index=0, source="/s/a.jpg", source_name="a.jpg", image_id="a")
    problem = validate_decision(
        ReviewDecision(decision="replace", retouched_file=device, retoucher="Ana"), item
    )
    assert "not a regular file" in problem and "exported PNG or TIFF" in problem
