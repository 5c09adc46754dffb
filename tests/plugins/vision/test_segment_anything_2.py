"""POST /segment-anything-2 over HTTP with a tiny SAM 2 model through transformers' Sam2Model."""

import ast
import io
import json

import numpy as np
import pytest

from warmgate import FunctionConfig, Settings
from warmgate.core.plugins import get_pipelines


def image_bytes(width=80, height=60):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 20, 160)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def tiny_sam2(tiny_model_dir):
    return str(tiny_model_dir(get_pipelines()["segment-anything-2"]))


@pytest.fixture
def sam(warmgate_server, tiny_sam2):
    _, client = warmgate_server(Settings(functions=[FunctionConfig(pipeline="segment-anything-2", model_id=tiny_sam2)]))
    return client


def segment(client, **fields):
    data = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
    return client.post("/segment-anything-2", files={"image": ("in.png", image_bytes())}, data=data)


def arrays(response):
    body = response.json()
    assert set(body) == {"masks", "scores", "logits"}
    return {k: np.array(ast.literal_eval(v)) for k, v in body.items()}


def test_three_masks_at_image_size_sorted_by_score(sam):
    r = segment(sam, point_coords=[[20, 30], [60, 40]], point_labels=[1, 0])
    assert r.status_code == 200, r.text
    out = arrays(r)
    assert out["masks"].shape == (3, 60, 80) and out["masks"].dtype == np.float64  # logits by default
    assert out["scores"].shape == (3,) and list(out["scores"]) == sorted(out["scores"], reverse=True)
    assert out["logits"].shape == (3, 32, 32)


def test_single_binary_mask_for_a_box(sam):
    r = segment(sam, box=[5, 5, 70, 50], multimask_output="false", return_logits="false")
    assert r.status_code == 200, r.text
    out = arrays(r)
    assert out["masks"].shape == (1, 60, 80) and out["masks"].dtype == np.bool_
    assert out["scores"].shape == (1,)


def test_a_previous_low_res_mask_can_be_fed_back(sam):
    first = arrays(segment(sam, point_coords=[[20, 30]], point_labels=[1]))
    again = segment(sam, point_coords=[[20, 30]], point_labels=[1], mask_input=first["logits"][:1].tolist())
    assert again.status_code == 200, again.text
    wrong = segment(sam, point_coords=[[20, 30]], point_labels=[1], mask_input=[[[0.0] * 8] * 8])
    assert wrong.status_code == 400 and "1x32x32" in wrong.json()["detail"]["msg"]


def test_normalized_coordinates_land_on_the_same_pixels(sam):
    pixels = arrays(segment(sam, point_coords=[[40, 30]], point_labels=[1]))
    relative = arrays(segment(sam, point_coords=[[0.5, 0.5]], point_labels=[1], normalize_coords="false"))
    assert np.allclose(pixels["scores"], relative["scores"])


@pytest.mark.parametrize(("fields", "field"), [
    ({"point_coords": "[[1, 2]", "point_labels": "[1]"}, "point_coords"),
    ({"point_coords": [[1, 2, 3]], "point_labels": [1]}, "point_coords"),
    ({"point_coords": [["a", 2]], "point_labels": [1]}, "point_coords"),
    ({"point_coords": [[1, 2]]}, "point_labels"),
    ({"point_coords": [[1, 2]], "point_labels": [1, 0]}, "point_labels"),
    ({"point_labels": [1]}, "point_labels"),
    ({"box": [1, 2, 3]}, "box"),
    ({"box": "not json"}, "box"),
    ({"box": [0, 0, 9, 9], "mask_input": [[1, 2]]}, "mask_input"),
    ({}, "no prompt"),
])
def test_bad_prompts_are_a_400_naming_the_field(sam, fields, field):
    r = segment(sam, **fields)
    assert r.status_code == 400, r.text
    assert r.json()["detail"]["msg"].startswith(field)


def test_an_undecodable_image_is_a_415(sam):
    r = sam.post("/segment-anything-2", files={"image": ("x.png", b"nope")}, data={"box": "[0, 0, 4, 4]"})
    assert r.status_code == 415


def test_a_bad_boolean_is_a_422(sam):
    r = segment(sam, box=[0, 0, 9, 9], multimask_output="perhaps")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "multimask_output"]


@pytest.mark.parametrize(("width", "height"), [(1, 1), (2, 2), (4096, 1), (1, 4096)])
def test_tiny_and_extreme_images_get_masks_at_their_size(sam, width, height):
    r = sam.post("/segment-anything-2", files={"image": ("in.png", image_bytes(width, height))},
                 data={"point_coords": "[[0, 0]]", "point_labels": "[1]"})
    assert r.status_code == 200, r.text
    assert arrays(r)["masks"].shape == (3, height, width)
