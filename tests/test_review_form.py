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
