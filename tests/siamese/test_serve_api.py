"""`siamese serve`'s JSON API through the framework's test client: every endpoint, each input form,
errors as one-line JSON with the right status, the token, the upload limits, hostile keys, and
labels appended to PAIRS.csv atomically by concurrent writers."""

from __future__ import annotations

import csv
import shutil
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
import tiny_workspace
import torch
from fastapi.testclient import TestClient
from torchvision.io import decode_png, encode_png

from index import VectorIndex
from siamese import SiameseError
from siamese.cli import main
from siamese.data.pairs import read_pairs_csv
from siamese.retrieval.item_sources import record_source
from siamese.serve.app import create_app
from siamese.serve.config import ServeConfig
from siamese.serve.service import Service


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tiny_workspace.shared(tmp_path_factory)


def client(workspace: Path, model: Path | None = None, index: Path | None = None, **config) -> TestClient:
    service = Service.load(index or workspace / "index", model or workspace / "tuned", ServeConfig(**config))
    return TestClient(create_app(service), base_url="http://127.0.0.1")


@pytest.fixture(scope="module")
def api(workspace) -> TestClient:
    return client(workspace)


@pytest.fixture(scope="module")
def calibrated(workspace, tmp_path_factory) -> TestClient:
    """A copy of the fine-tuned model with a calibration; labels go to a PAIRS.csv."""
    root = tmp_path_factory.mktemp("calibrated")
    shutil.copytree(workspace / "tuned", root / "tuned")
    assert main(["calibrate", str(root / "tuned"), str(workspace / "images"), "--pairs", str(workspace / "pairs.csv"),
                 "-q"]) == 0
    return client(workspace, model=root / "tuned", pairs_out=root / "labels.csv")


def error_of(response, status: int) -> str:
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert isinstance(message, str) and "\n" not in message and message
    return message


def test_health_and_info(api, workspace):
    assert api.get("/health").json() == {"status": "ok"}
    info = api.get("/info").json()
    assert info["count"] == 24 and info["dim"] == 4 and info["kind"] == "flat" and info["metric"] == "cosine"
    assert info["labelled"] == 24 and info["classes"] == ["0", "1"] and info["calibration"] is None
    assert info["item_shape"] == [1, 8, 8] and info["images"] is True
    assert info["pairs"] == {"enabled": False, "path": None, "labelled": 0}
    index = VectorIndex.load(workspace / "index")
    assert info["model_fingerprint"] == index.model_fingerprint


def test_search_by_key_leaves_the_item_out_and_ranks_best_first(api, workspace):
    results = api.post("/search", json={"key": "0/3.png", "k": 5}).json()["results"]
    assert len(results) == 5 and "0/3.png" not in [r["key"] for r in results]
    assert [r["distance"] for r in results] == sorted(r["distance"] for r in results)
    assert set(results[0]) == {"key", "id", "distance", "label"}
    index = VectorIndex.load(workspace / "index")
    expected = index.search(index.get(["0/3.png"]), 6)
    assert [r["key"] for r in results] == [k for k in expected.keys[0].tolist() if k != "0/3.png"][:5]


def test_search_by_vector_and_by_upload_agree_with_the_index(api, workspace):
    from siamese import embed, load_items, load_model

    model = load_model(workspace / "tuned")
    query = load_items([str(workspace / "queries" / "c.png")], preprocessing=model.preprocessing)
    z = embed(model, query)
    by_vector = api.post("/search", json={"vector": z[0].tolist(), "k": 4}).json()["results"]
    with open(workspace / "queries" / "c.png", "rb") as fh:
        by_upload = api.post("/search", files={"image": ("c.png", fh, "image/png")}, data={"k": "4"}).json()["results"]
    expected = VectorIndex.load(workspace / "index").search(z, 4)
    assert [r["key"] for r in by_vector] == [r["key"] for r in by_upload] == expected.keys[0].tolist()
    assert all(r["label"] == "1" for r in by_upload)  # c.png is a horizontal bar, class 1


def test_an_upload_of_another_size_goes_through_the_models_preprocessing(api):
    big = torch.zeros(1, 40, 40, dtype=torch.uint8)
    big[:, 20, :] = 255  # a horizontal bar, five times the indexed size
    response = api.post("/search", files={"image": ("big.png", bytes(encode_png(big).numpy()))})
    assert response.status_code == 200 and len(response.json()["results"]) == 9


@pytest.mark.parametrize("body, status, words", [
    ({"key": "missing.png"}, 404, "no indexed item has the key"),
    ({"vector": [1, 2]}, 422, "list of 4 numbers"),
    ({"vector": [1, 2, 3, "x"]}, 422, "numbers between"),
    ({"vector": [1, 2, 3, 10**400]}, 422, "numbers between"),  # too large for a float
    ({"vector": [1, 2, 3, 1e39]}, 422, "numbers between"),  # infinite in float32
    ({"vector": None}, 422, "got null"),
    ({"key": "0/3.png", "k": 0}, 422, "k must be a whole number from 1 to 100"),
    ({"key": "0/3.png", "k": 101}, 422, "k must be a whole number"),
    ({"key": "0/3.png", "k": True}, 422, "k must be a whole number"),
    ({"key": "0/3.png", "vector": [0, 0, 0, 1]}, 422, "exactly one of"),
    ({}, 422, "exactly one of"),
    ([1, 2], 422, "must be an object"),
    ({"key": "x" * 5000}, 422, "characters long"),
])
def test_bad_search_requests_get_one_line_errors(api, body, status, words):
    assert words in error_of(api.post("/search", json=body), status)


def test_malformed_bodies_and_uploads_are_refused(api):
    json_type = {"content-type": "application/json"}
    assert "not valid JSON" in error_of(api.post("/search", content=b"{nope", headers=json_type), 422)
    assert "not valid JSON" in error_of(api.post("/search", content=b"[" * 100_000, headers=json_type), 422)
    assert "Content-Type: application/json" in error_of(api.post("/search", content=b'{"key": "0/1.png"}'), 415)
    assert "not an image" in error_of(api.post("/search", files={"image": ("x.png", b"hello")}), 422)
    assert "is empty" in error_of(api.post("/search", files={"image": ("x.png", b"")}), 422)
    assert "file field 'image'" in error_of(api.post("/search", data={"k": "3"}, files={"other": ("a", b"1")}), 422)
    assert "whole number" in error_of(api.post("/search", files={"image": ("x.png", b"\x89PNG\r\n\x1a\n")},
                                               data={"k": "many"}), 422)


def test_a_64_mb_upload_is_refused_not_read(api):
    payload = b"\x89PNG\r\n\x1a\n" + bytes(64 * 2**20)
    message = error_of(api.post("/search", files={"image": ("huge.png", payload)}), 413)
    assert "--max-upload-mb" in message


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb's calling card)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def test_an_upload_claiming_too_many_pixels_is_refused_before_decoding(api):
    message = error_of(api.post("/search", files={"image": ("bomb.png", _png_claiming(60000, 60000))}), 422)
    assert "pixels" in message and "upload" in message


def test_classify_votes_among_labelled_neighbours(api):
    answer = api.post("/classify", json={"key": "1/4.png", "k": 3}).json()
    assert answer["label"] == "1" and answer["unknown"] is False and answer["k"] == 3
    assert sum(answer["votes"].values()) == 3 and len(answer["neighbors"]) == 3


def test_verify_without_calibration_gives_the_distance_only(api):
    answer = api.post("/verify", json={"a": {"key": "0/1.png"}, "b": {"key": "1/1.png"}}).json()
    assert answer["distance"] > 0 and answer["same"] is None and answer["p_same"] is None
    assert "exactly one of" in error_of(api.post("/verify", json={"a": {"key": "0/1.png"}}), 422)


def test_verify_and_classify_with_a_calibrated_model(calibrated, workspace):
    info = calibrated.get("/info").json()
    assert info["calibration"]["metric"] == "cosine" and info["calibration"]["threshold"] > 0
    threshold = info["calibration"]["threshold"]
    answers = [calibrated.post("/verify", json={"a": {"key": "0/1.png"}, "b": {"key": b}}).json()
               for b in ("0/2.png", "1/1.png", "1/5.png")]
    with open(workspace / "queries" / "a.png", "rb") as a, open(workspace / "queries" / "b.png", "rb") as b:
        answers.append(calibrated.post("/verify", files={"a": ("a.png", a), "b": ("b.png", b)}).json())
    for answer in answers:
        assert answer["same"] == (answer["distance"] <= threshold) and answer["threshold"] == threshold
        assert 0 <= answer["p_same"] <= 1
    by_distance = sorted(answers, key=lambda answer: answer["distance"])
    assert [a["p_same"] for a in by_distance] == sorted((a["p_same"] for a in answers), reverse=True)
    far = calibrated.post("/classify", json={"vector": [0.0, 0.0, 0.0, 1.0]}).json()
    assert set(far) == {"label", "unknown", "k", "votes", "neighbors"}


def test_item_images_are_the_indexed_items_as_png(api, workspace):
    response = api.get("/items/0/image")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    image = decode_png(torch.frombuffer(bytearray(response.content), dtype=torch.uint8))
    assert tuple(image.shape) == (1, 8, 8) and int(image.max()) == 255
    assert api.get("/items/0").json() == {"id": 0, "key": "0/0.png", "label": "0"}
    assert "no indexed item has the id" in error_of(api.get("/items/999/image"), 404)
    assert "no indexed item has the id" in error_of(api.get("/items/-1"), 404)
    assert error_of(api.get("/items/..%2F..%2Fetc%2Fpasswd/image"), 404)  # ids, never paths


def test_a_hostile_key_cannot_lead_outside_its_source(workspace, tmp_path, caplog):
    secret = tmp_path / "secret.png"
    shutil.copy(workspace / "queries" / "a.png", secret)
    shutil.copytree(workspace / "index", tmp_path / "index")
    index = VectorIndex.load(tmp_path / "index")
    first = index.next_id
    index.add(np.ones((1, 4), np.float32), keys=["../../secret.png"])
    record_source(index, str(workspace / "images"), first, index.next_id)
    index.save(tmp_path / "index", overwrite=True)
    hostile = client(workspace, index=tmp_path / "index")
    with caplog.at_level("WARNING", logger="siamese.serve.service"):
        assert "cannot be read from where the index recorded it" in error_of(hostile.get(f"/items/{first}/image"), 404)
    assert "outside its source folder" in caplog.text  # the reason is logged, the server's paths not sent


def test_the_map_places_every_item_of_a_small_index(api):
    answer = api.get("/map").json()
    assert answer["method"] == "t-SNE" and answer["total"] == 24 and len(answer["points"]) == 24
    assert all(0 <= p["x"] <= 1 and 0 <= p["y"] <= 1 for p in answer["points"])
    assert {p["key"] for p in answer["points"]} == {f"{c}/{i}.png" for c in "01" for i in range(12)}


def test_the_map_of_a_big_index_is_a_capped_sample(workspace):
    answer = client(workspace, map_size=10, map_method="pca").get("/map").json()
    assert answer["method"] == "PCA" and answer["total"] == 24 and len(answer["points"]) == 10


def test_read_only_server_proposes_pairs_but_refuses_labels(api):
    proposal = api.get("/pairs/next").json()
    assert {"a", "b", "distance", "reason", "labelled"} <= set(proposal)
    assert proposal["a"]["key"] != proposal["b"]["key"]
    message = error_of(api.post("/pairs", json={"a": "0/1.png", "b": "0/2.png", "label": 1}), 403)
    assert "--pairs-out" in message


def test_labels_are_appended_in_the_format_finetune_reads(workspace, tmp_path):
    labels = tmp_path / "labels.csv"
    api = client(workspace, pairs_out=labels)
    shown = []
    for label in (1, 0, 1):
        proposal = api.get("/pairs/next").json()
        pair = (proposal["a"]["key"], proposal["b"]["key"])
        assert pair not in shown
        shown.append(pair)
        answer = api.post("/pairs", json={"a": pair[0], "b": pair[1], "label": label}).json()
        assert answer["path"] == str(labels)
    assert answer["labelled"] == 3 and api.get("/info").json()["pairs"]["labelled"] == 3
    rows = list(csv.reader(labels.open()))
    assert rows == [["a", "b", "label"]] + [[a, b, str(y)] for (a, b), y in zip(shown, (1, 0, 1))]
    keys = [f"{c}/{i}.png" for c in "01" for i in range(12)]
    assert len(read_pairs_csv(labels, keys)) == 3
    assert main(["finetune", str(workspace / "tuned"), str(workspace / "images"), "--pairs", str(labels), "--out",
                 str(tmp_path / "again"), "--epochs", "1", "--batch-size", "8", "-q"]) == 0  # the loop closes
    again = api.post("/pairs", json={"a": shown[0][1], "b": shown[0][0], "label": 1})
    assert again.json()["labelled"] == 3  # the same label again: nothing added
    assert "already labelled 1" in error_of(api.post("/pairs", json={"a": shown[0][0], "b": shown[0][1], "label": 0}),
                                            409)


@pytest.mark.parametrize("body, status, words", [
    ({"a": "0/1.png", "b": "0/1.png", "label": 1}, 422, "two different items"),
    ({"a": "0/1.png", "b": "nope.png", "label": 1}, 404, "no indexed item"),
    ({"a": "0/1.png", "b": "0/2.png", "label": 2}, 422, "label must be 1"),
    ({"a": "0/1.png", "b": "0/2.png", "label": True}, 422, "label must be 1"),
    ({"a": "0/1.png", "label": 1}, 422, "b must be the key"),
])
def test_bad_labels_are_refused(workspace, tmp_path, body, status, words):
    api = client(workspace, pairs_out=tmp_path / "labels.csv")
    assert words in error_of(api.post("/pairs", json=body), status)
    assert not (tmp_path / "labels.csv").exists()


def test_pairs_out_must_be_a_pairs_file(workspace, tmp_path):
    other = tmp_path / "notes.csv"
    other.write_text("name,value\nx,1\n")
    with pytest.raises(SiameseError, match="a,b,label"):
        client(workspace, pairs_out=other)
    assert other.read_text() == "name,value\nx,1\n"
    with pytest.raises(SiameseError, match="must be a .csv file"):
        client(workspace, pairs_out=workspace / "images" / "0" / "1.png")
    with pytest.raises(SiameseError, match="must be a .csv file"):
        client(workspace, pairs_out=tmp_path / "labels.txt")  # not even a new file of another kind
    both = tmp_path / "both.csv"
    both.write_text("a,b,label\n0/1.png,0/2.png,1\n0/2.png,0/1.png,0\n")
    with pytest.raises(SiameseError, match="line 3 labels"):
        client(workspace, pairs_out=both)


def test_labels_follow_a_symlinked_pairs_file(workspace, tmp_path):
    target = tmp_path / "target.csv"
    target.write_text("a,b,label\n")
    (tmp_path / "link.csv").symlink_to(target)
    api = client(workspace, pairs_out=tmp_path / "link.csv")
    assert api.post("/pairs", json={"a": "0/1.png", "b": "1/1.png", "label": 0}).status_code == 200
    assert (tmp_path / "link.csv").is_symlink() and target.read_text() == "a,b,label\n0/1.png,1/1.png,0\n"


def test_another_sites_page_cannot_post_and_loopback_names_are_checked(api):
    body = {"a": "0/1.png", "b": "0/2.png", "label": 1}
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        assert "another site" in error_of(api.post("/search", json={"key": "0/1.png"}, headers=headers), 403)
        assert "another site" in error_of(api.post("/pairs", json=body, headers=headers), 403)
    same = {"Origin": "http://127.0.0.1", "Sec-Fetch-Site": "same-origin"}
    assert api.post("/search", json={"key": "0/1.png"}, headers=same).status_code == 200
    assert "127.0.0.1 or localhost" in error_of(api.get("/info", headers={"Host": "evil.example:8000"}), 400)


def test_classify_without_labels_says_how_to_add_them(tmp_path):
    import numpy as np

    np.save(tmp_path / "v.npy", np.random.default_rng(0).normal(size=(30, 6)).astype(np.float32))
    assert main(["pretrain", str(tmp_path / "v.npy"), "--out", str(tmp_path / "m"), "--latent-dim", "3", "--epochs",
                 "1", "-q"]) == 0
    assert main(["index", "build", str(tmp_path / "m"), str(tmp_path / "v.npy"), "--out", str(tmp_path / "i"),
                 "-q"]) == 0
    api = TestClient(create_app(Service.load(tmp_path / "i", tmp_path / "m", ServeConfig(map_method="pca"))),
                     base_url="http://127.0.0.1")
    assert "--labels" in error_of(api.post("/classify", json={"key": "0"}), 422)


def test_concurrent_labellers_lose_no_row(workspace, tmp_path):
    labels = tmp_path / "labels.csv"
    servers = [client(workspace, pairs_out=labels) for _ in range(2)]  # two servers, one file
    keys = [f"{c}/{i}.png" for c in "01" for i in range(12)]
    pairs = [(keys[i], keys[j]) for i in range(24) for j in range(i + 1, 24)][:40]

    def label(server, chunk):
        for a, b in chunk:
            assert server.post("/pairs", json={"a": a, "b": b, "label": int(a[0] == b[0])}).status_code == 200

    threads = [threading.Thread(target=label, args=(servers[i % 2], pairs[i::4])) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(read_pairs_csv(labels, keys)) == 40


def test_proposals_put_split_votes_first_then_pairs_nearest_the_threshold(calibrated):
    threshold = calibrated.get("/info").json()["calibration"]["threshold"]
    proposals = [calibrated.get("/pairs/next").json() for _ in range(8)]
    assert all("calibrated threshold" in p["reason"] for p in proposals)
    split = ["disagree" in p["reason"] for p in proposals]
    assert split == sorted(split, reverse=True)
    for group in (True, False):
        gaps = [abs(p["distance"] - threshold) for p, s in zip(proposals, split) if s == group]
        assert gaps == sorted(gaps)


def test_a_loopback_server_refuses_other_host_names(workspace):
    rebound = TestClient(create_app(Service.load(workspace / "index", workspace / "tuned", ServeConfig())),
                         base_url="http://attacker.example")
    assert rebound.get("/info").status_code == 400


def test_the_token_guards_the_api_but_not_the_page(workspace):
    api = client(workspace, token="s3cret")
    assert api.get("/health").status_code == 200 and api.get("/").status_code == 200
    assert api.get("/static/app.js").status_code == 200
    assert "Authorization: Bearer" in error_of(api.get("/info"), 401)
    assert "Authorization: Bearer" in error_of(api.get("/info", headers={"Authorization": "Bearer wrong"}), 401)
    assert api.get("/info", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert error_of(api.get("/items/0/image"), 401)


def test_a_bug_is_a_json_500_not_a_crash(workspace, monkeypatch):
    api = client(workspace)
    monkeypatch.setattr(Service, "info", lambda self: 1 / 0)
    broken = TestClient(api.app, base_url="http://127.0.0.1", raise_server_exceptions=False)
    assert "internal error (ZeroDivisionError)" in error_of(broken.get("/info"), 500)
    assert broken.get("/health").status_code == 200


def test_the_page_and_the_api_description_work_offline(api):
    page = api.get("/")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    assert "http://" not in page.text and "https://" not in page.text  # no CDN
    docs = api.get("/docs").text
    assert "/docs-assets/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    assert api.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    spec = api.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.0.")  # the bundled Swagger UI 4 renders 3.0 only
    paths = spec["paths"]
    assert {"/search", "/classify", "/verify", "/map", "/pairs/next", "/pairs", "/items/{item_id}/image"} <= set(paths)
    assert "no such page" in error_of(api.get("/nothing"), 404)


def test_a_vector_index_serves_without_images(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "vectors.npy"
    np.save(data, rng.normal(size=(40, 6)).astype(np.float32))
    assert main(["pretrain", str(data), "--out", str(tmp_path / "model"), "--latent-dim", "3", "--epochs", "1",
                 "--batch-size", "8", "-q"]) == 0
    assert main(["index", "build", str(tmp_path / "model"), str(data), "--out", str(tmp_path / "index"), "-q"]) == 0
    service = Service.load(tmp_path / "index", tmp_path / "model", ServeConfig(map_method="pca"))
    api = TestClient(create_app(service), base_url="http://localhost")
    assert api.get("/info").json()["images"] is False
    assert "vectors, not images" in error_of(api.get("/items/0/image"), 404)
    assert len(api.post("/search", json={"key": "0", "k": 3}).json()["results"]) == 3
    assert api.get("/map").json()["method"] == "PCA" and len(api.get("/map").json()["points"]) == 40
