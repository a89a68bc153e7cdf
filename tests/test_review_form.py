"""The Resume form a shoot stores with each review run it creates waiting: the schema the UI
draws it from must be the one Prefect's own `suspend_flow_run` would store, first time and
when an answer was refused."""

from __future__ import annotations

from pathlib import Path

from prefect._internal.pydantic.v2_schema import create_v2_schema

from cutline.domain.items import ImageItem
from cutline.services.waiting_run import form_schema
from tasks.review import decision_form
from tests.contexts import shoot_context


def _item(folder: Path) -> ImageItem:
    return ImageItem(
        index=0,
        source=str(folder / "a.jpg"),
        source_name="a.jpg",
        image_id="a",
        sku="SKU-1",
        category="glassware",
    )


def test_forms_carry_the_schema_prefect_would_store(tmp_path: Path) -> None:
    item, ctx = _item(tmp_path), shoot_context(tmp_path, "JOB-FORM")
    first = decision_form(item, ctx, {"page": "http://127.0.0.1/s/x/index.html"})
    other = decision_form(_item(tmp_path / "b"), ctx, {})
    expected = create_v2_schema(first.__name__, model_base=first)
    assert form_schema(first) == expected == form_schema(other)
    assert "default" not in expected["properties"]["decision"]  # no careless Submit

    # A refused answer is asked again with that answer as the starting values.
    again = decision_form(
        item, ctx, {}, problem="enter your name", previous={"decision": "approve", "note": "ok"}
    )
    schema = form_schema(again)
    assert schema == create_v2_schema(again.__name__, model_base=again)
    assert schema["properties"]["decision"]["default"] == "approve"
    assert schema["properties"]["note"]["default"] == "ok"
    assert form_schema(first) == expected  # the cached first form is not changed by it


def _halves(width: int = 64, height: int = 48):
    import numpy as np

    left = np.zeros((height, width), dtype=np.uint8)
    left[:, : width // 2] = 255
    return left, 255 - left


def _replace(path: str):
    from tasks.review import ReviewDecision

    return ReviewDecision(decision="replace", retouched_file=path, retoucher="Ana Retoucher")


def test_masks_that_publish_nothing_or_everything_are_refused_with_the_reason(tmp_path: Path):
    """A retouched file that is (almost) fully transparent would publish nothing, one fully
    opaque the whole background: refused, saying so, whatever format it comes in."""
    import numpy as np
    from PIL import Image

    from tasks.review import validate_decision
    from tests.reviews import retouched_png

    item = _item(tmp_path).model_copy(update={"width": 64, "height": 48})
    clear = retouched_png(tmp_path / "clear.png", np.zeros((48, 64)))
    speck = np.zeros((48, 64))
    speck[0, 0] = 255  # one pixel of 3072: 0.03%
    almost = retouched_png(tmp_path / "speck.png", speck)
    solid = retouched_png(tmp_path / "solid.png", np.full((48, 64), 255))
    white = tmp_path / "white-mask.png"
    Image.new("L", (64, 48), 255).save(white)
    photo = tmp_path / "photo.png"  # RGB, no alpha: never a mask
    Image.new("RGB", (64, 48), (90, 160, 220)).save(photo)
    assert "is fully transparent" in validate_decision(_replace(clear), item)
    assert "nothing would be published" in validate_decision(_replace(clear), item)
    assert "is almost fully transparent" in validate_decision(_replace(almost), item)
    assert "is fully opaque" in validate_decision(_replace(solid), item)
    assert "whole background" in validate_decision(_replace(str(white)), item)
    assert "no alpha channel" in validate_decision(_replace(str(photo)), item)
    good = retouched_png(tmp_path / "good.png", _halves()[0])
    assert validate_decision(_replace(good), item) == ""


def test_a_psd_whose_composite_is_not_its_layers_is_refused(tmp_path: Path):
    """The saved composite of a PSD is what a flat reader publishes; when it is not what the
    layers make (saved without 'Maximize compatibility'), the file is refused, saying how to
    re-save it. An honest layered PSD is taken."""
    from tasks.review import validate_decision
    from tests.reviews import layered_psd

    item = _item(tmp_path).model_copy(update={"width": 64, "height": 48})
    left, right = _halves()
    honest = layered_psd(tmp_path / "honest.psd", left, left)
    lying = layered_psd(tmp_path / "lying.psd", left, right)
    assert validate_decision(_replace(honest), item) == ""
    problem = validate_decision(_replace(lying), item)
    assert "another picture than its layers show" in problem
    assert "Maximize PSD compatibility" in problem and "100.0%" in problem


def test_the_checked_retouched_mask_is_kept_with_its_hash(tmp_path: Path):
    """The check keeps what it read (the decoded mask, the file's name and SHA-256) in the job
    folder: what lands is that, even when the retoucher's file changes afterwards."""
    import hashlib
    import json

    import numpy as np
    from PIL import Image

    from tasks.review import retouched_snapshot, validate_decision
    from tests.reviews import retouched_png

    item = _item(tmp_path).model_copy(update={"width": 64, "height": 48})
    ctx = shoot_context(tmp_path, "JOB-SNAP")
    left, _ = _halves()
    path = retouched_png(tmp_path / "retouched.png", left)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    snapshot = retouched_snapshot(item, ctx, "run-0")
    assert validate_decision(_replace(path), item, snapshot) == ""
    Image.new("RGB", (64, 48), (1, 2, 3)).save(path)  # the original changes afterwards
    assert np.array_equal(np.asarray(Image.open(snapshot)), left)
    kept = json.loads(Path(snapshot + ".json").read_text())
    assert kept == {"retouched_file": path, "sha256": digest}
    assert Path(snapshot).parent == Path(ctx.job_root) / "masks"
