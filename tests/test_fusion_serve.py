"""Serving a fused model (recipe ``fusion``): each example's named inputs in one JSON body."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from shoptransfer.api import explain_predictions, predict, run_experiment  # noqa: E402
from shoptransfer.config import load_config  # noqa: E402
from shoptransfer.errors import ConfigError  # noqa: E402
from shoptransfer.serving import ServeSettings, Service, create_app  # noqa: E402
from tests.test_fusion import DOMAIN_INPUTS, tiny_run, write_products  # noqa: E402

MODEL = "fused-k4-seed0"


@pytest.fixture(scope="module")
def fused_run(tmp_path_factory: pytest.TempPathFactory, tiny_backbone: str) -> Path:
    root = tmp_path_factory.mktemp("serve-fused")
    train, test = write_products(root / "train"), write_products(root / "test", 4, seed=1)
    domain = {"inputs": DOMAIN_INPUTS}
    config = {
        "name": "fused",
        "target": {"path": str(train), **domain},
        "target_test": {"path": str(test), **domain},
        **tiny_run(root),
        "budgets": [4],
        "seeds": [0],
        "recipes": [
            {"name": "fusion", "label": "fused", "text_backbone": tiny_backbone, "epochs": 5}
        ],
    }
    (root / "fused.yaml").write_text(yaml.safe_dump(config))
    return run_experiment(load_config(root / "fused.yaml"), show_progress=False)


def encoded(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def test_a_fused_model_serves_named_inputs_any_of_them_missing(fused_run: Path) -> None:
    photo = next(fused_run.parent.parent.glob("test/blue-1-*.jpg"))
    with TestClient(create_app(settings=ServeSettings(str(fused_run), model=MODEL))) as client:
        one = client.post(
            "/v1/classify", json={"inputs": {"photo": encoded(photo), "title": "navy steel watch"}}
        )
        assert one.status_code == 200, one.text
        body = one.json()
        assert body["model"] == MODEL and body["backend"] == "fusion"
        (row,) = body["predictions"]
        assert set(row["probabilities"]) == {"blue", "green", "red"}
        assert client.get("/v1/model").json()["model"] == MODEL
        # the same as predicting from Python, for both inputs and for each alone
        many = client.post(
            "/v1/classify",
            json={
                "inputs": [
                    {"photo": encoded(photo), "title": "navy steel watch"},
                    {"photo": encoded(photo)},
                    {"title": "crimson cotton shirt", "photo": None},
                ]
            },
        )
        assert many.status_code == 200, many.text
        rows = many.json()["predictions"]
        labels, probabilities, classes = predict(
            fused_run,
            {
                "photo": [str(photo), str(photo), None],
                "title": ["navy steel watch", None, "crimson cotton shirt"],
            },
            model=MODEL,
        )
        assert [r["label"] for r in rows] == list(labels)
        served = np.array([[r["probabilities"][c] for c in classes] for r in rows])
        assert np.allclose(served, probabilities, atol=1e-5)
        # one request alone and the same request in a batch: equal up to batch-size float noise
        assert rows[0]["label"] == row["label"]
        assert np.allclose(
            [rows[0]["probabilities"][c] for c in classes],
            [row["probabilities"][c] for c in classes],
            atol=1e-5,
        )
        # bad requests: one line naming the field
        for request, field, words in [
            ({"inputs": {"colour": "red"}}, "inputs.colour", "unknown input"),
            ({"inputs": {}}, "inputs", "no input given"),
            ({"inputs": [{"photo": None, "title": None}]}, "inputs[0]", "no input given"),
            ({"inputs": {"photo": "not base64!"}}, "inputs.photo", "not base64"),
            (
                {"inputs": {"photo": encoded(fused_run / "results.json")}},
                "inputs.photo",
                "not an image",
            ),
            ({"texts": ["navy steel watch"]}, "body", '{"inputs"'),
            ({"inputs": {"title": 3}}, "inputs.title", "non-empty string"),
        ]:
            answer = client.post("/v1/classify", json=request)
            assert answer.status_code == 422, (request, answer.text)
            error = answer.json()
            assert error["field"] == field and words in error["error"], error
            assert "\n" not in error["error"]
        uploaded = client.post(
            "/v1/classify", files=[("images", ("a.jpg", photo.read_bytes(), "image/jpeg"))]
        )
        assert uploaded.status_code == 422 and "fused model" in uploaded.json()["error"]
        assert client.post("/v1/embed", json={"inputs": {"title": "x"}}).status_code == 409
        # why: the same explanation as from Python (each input hidden, each title word deleted)
        why = client.post(
            "/v1/explain", json={"inputs": {"photo": encoded(photo), "title": "navy steel watch"}}
        )
        assert why.status_code == 200, why.text
        (served_why,) = why.json()["explanations"]
        (expected,) = explain_predictions(
            fused_run, {"photo": [str(photo)], "title": ["navy steel watch"]}, model=MODEL
        )
        assert served_why["label"] == expected.label
        assert served_why["inputs"] == pytest.approx(expected.inputs, abs=1e-5)
        assert [(w["input"], w["word"]) for w in served_why["words"]] == [
            ("title", "navy"),
            ("title", "steel"),
            ("title", "watch"),
        ]
        refused = client.post(
            "/v1/explain?method=integrated-gradients", json={"inputs": {"title": "x"}}
        )
        assert refused.status_code in (400, 422) and "occlusion" in refused.json()["error"]


def test_a_fused_model_has_no_onnx_to_serve(fused_run: Path) -> None:
    with pytest.raises(ConfigError, match=f"{MODEL} is a fused model; it has no ONNX export"):
        Service(ServeSettings(str(fused_run), model=MODEL, onnx=True))
