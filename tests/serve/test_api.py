"""Every route of the HTTP API through FastAPI's TestClient, bad input included."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from vpl.data.io import load_records
from vpl.serve.app import create_app
from vpl.serve.cli import build_service
from vpl.serve.schemas import MAX_BODY, MAX_TEXT
from vpl.serve.store import sqlite_url


@pytest.fixture(scope="module")
def service(run_dir, tmp_path_factory):
    db = tmp_path_factory.mktemp("db") / "serve.sqlite"
    pool = tmp_path_factory.mktemp("pool") / "pool.jsonl"
    pool.write_text("\n".join(json.dumps({"prompt": f"q{i}", "a": f"answer a{i}",
                                          "b": f"answer b{i}"}) for i in range(5)))
    return build_service(str(run_dir), sqlite_url(db), str(pool))


@pytest.fixture(scope="module")
def client(service):
    return TestClient(create_app(service))


@pytest.fixture(scope="module")
def key(service):
    return service.store.create_key("tests")


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def new_user(client, key) -> str:
    r = client.post("/v1/users", headers=auth(key))
    assert r.status_code == 201
    return r.json()["user_id"]


def user_comparisons(pets, user_type: str, n: int = 8) -> list[dict]:
    """The first `n` comparisons of the first test user of a Pets type."""
    records, _ = load_records(pets / "test.jsonl")
    uid = next(r.user_id for r in records if r.meta.get("user_type") == user_type)
    return [{"prompt": r.prompt, "chosen": r.chosen, "rejected": r.rejected}
            for r in records if r.user_id == uid][:n]


def test_health_needs_no_key(client, service):
    r = client.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok", "run": service.scorer.run_id}


def test_keys_are_required_and_checked(client):
    assert client.post("/v1/users").status_code == 401
    assert client.post("/v1/users", headers=auth("vpl_wrong")).status_code == 401
    assert client.get("/v1/users/x/latent", headers={"Authorization": "Basic abc"}
                      ).status_code == 401


def test_keys_are_stored_hashed(service, key):
    from sqlalchemy import select

    from vpl.serve.store import ApiKey, hash_key

    with service.store.session() as s:
        stored = s.scalars(select(ApiKey.key_hash)).all()
    assert hash_key(key) in stored and key not in stored


def test_comparisons_are_stored_and_counted_once_per_request_id(client, key, pets):
    uid = new_user(client, key)
    rows = user_comparisons(pets, "helpful_first", 4)
    r = client.post(f"/v1/users/{uid}/comparisons", headers=auth(key),
                    json={"comparisons": rows, "request_id": "r-1"})
    assert r.status_code == 200 and r.json() == {"stored": 4, "total": 4}
    again = client.post(f"/v1/users/{uid}/comparisons", headers=auth(key),
                        json={"comparisons": rows, "request_id": "r-1"})
    assert again.json() == {"stored": 4, "total": 4}  # a retry stores nothing twice
    more = client.post(f"/v1/users/{uid}/comparisons", headers=auth(key),
                       json={"comparisons": rows[:1]})
    assert more.json() == {"stored": 1, "total": 5}
    assert client.get(f"/v1/users/{uid}/latent", headers=auth(key)).json()["n_answers"] == 5


def test_latent_narrows_and_moves_with_answers(client, key, pets, service):
    uid = new_user(client, key)
    prior = client.get(f"/v1/users/{uid}/latent", headers=auth(key)).json()
    assert prior["n_answers"] == 0
    assert len(prior["mean"]) == len(prior["std"]) == service.scorer.model.latent_dim
    client.post(f"/v1/users/{uid}/comparisons", headers=auth(key),
                json={"comparisons": user_comparisons(pets, "helpful_first", 12)})
    post = client.get(f"/v1/users/{uid}/latent", headers=auth(key)).json()
    assert post["n_answers"] == 12
    assert np.mean(post["std"]) < np.mean(prior["std"])  # the answers carried information
    assert not np.allclose(post["mean"], prior["mean"])


def test_scores_follow_the_users_answers(client, key, pets):
    """Two users of opposite Pets types, eight answers each: on a comparison neither answered
    where the types disagree, each user's best response is the one their type prefers."""
    records, _ = load_records(pets / "test.jsonl")
    agree = 0
    total = 0
    for kind in ("helpful_first", "harmless_first"):
        uid = new_user(client, key)
        client.post(f"/v1/users/{uid}/comparisons", headers=auth(key),
                    json={"comparisons": user_comparisons(pets, kind, 8)})
        own = [r for r in records if r.meta.get("user_type") == kind][8:16]
        for rec in own:
            r = client.post(f"/v1/users/{uid}/score", headers=auth(key),
                            json={"prompt": rec.prompt, "responses": [rec.chosen, rec.rejected]})
            assert r.status_code == 200
            body = r.json()
            assert len(body["scores"]) == 2 and all(s["std"] >= 0 for s in body["scores"])
            agree += body["best"] == 0
            total += 1
    assert agree / total >= 0.7


def test_next_query_picks_an_informative_candidate(client, key, pets):
    uid = new_user(client, key)
    rows = user_comparisons(pets, "helpful_first", 6)
    cands = [{"prompt": r["prompt"], "a": r["chosen"], "b": r["rejected"]} for r in rows]
    cands.append({"prompt": rows[0]["prompt"], "a": rows[0]["chosen"], "b": rows[0]["chosen"]})
    r = client.post(f"/v1/users/{uid}/next-query", headers=auth(key), json={"candidates": cands})
    assert r.status_code == 200
    body = r.json()
    assert 0 <= body["index"] < len(cands) - 1  # never the pair of two identical responses
    assert body["info_gain"] > 0


def test_another_keys_user_is_forbidden_and_unknown_users_are_404(client, key, service):
    uid = new_user(client, key)
    other = service.store.create_key("other tenant")
    for method, path, body in (("get", f"/v1/users/{uid}/latent", None),
                               ("post", f"/v1/users/{uid}/score",
                                {"prompt": "", "responses": ["x"]}),
                               ("delete", f"/v1/users/{uid}", None)):
        r = client.request(method.upper(), path, headers=auth(other), json=body)
        assert r.status_code == 403, (method, path)
    assert client.get("/v1/users/nobody/latent", headers=auth(key)).status_code == 404


def test_delete_forgets_the_user(client, key, pets, service):
    uid = new_user(client, key)
    client.post(f"/v1/users/{uid}/comparisons", headers=auth(key),
                json={"comparisons": user_comparisons(pets, "helpful_first", 3)})
    assert client.delete(f"/v1/users/{uid}", headers=auth(key)).status_code == 204
    assert client.get(f"/v1/users/{uid}/latent", headers=auth(key)).status_code == 404
    assert service.store.count_answers(uid) == 0


@pytest.mark.parametrize("body,status", [
    (b"{not json", 400),
    (json.dumps({"comparisons": []}).encode(), 422),
    (json.dumps({"comparisons": [{"chosen": 1, "rejected": "b"}]}).encode(), 422),
    (json.dumps({"comparisons": [{"chosen": "a"}]}).encode(), 422),
    (json.dumps({"comparisons": [{"chosen": "", "rejected": "b"}]}).encode(), 422),
    (json.dumps({"comparisons": [{"chosen": "a" * (MAX_TEXT + 1), "rejected": "b"}]}).encode(),
     422),
    (json.dumps({"comparisons": [{"chosen": "a", "rejected": "b"}] * 1001}).encode(), 422),
    (json.dumps({"comparisons": [{"chosen": "a", "rejected": "b", "extra": 1}]}).encode(), 422),
    (json.dumps({"comparisons": [{"chosen": "a\u0000", "rejected": "b"}]}).encode(), 422),
    (json.dumps({"comparisons": [{"chosen": "a", "rejected": "b"}],
                 "request_id": "pool:1"}).encode(), 422),  # reserved for the annotation page
    (b"x" * (MAX_BODY + 1), 413),
])
def test_bad_input_gets_a_clear_4xx(client, key, body, status):
    uid = new_user(client, key)
    r = client.post(f"/v1/users/{uid}/comparisons", headers={**auth(key),
                    "Content-Type": "application/json"}, content=body)
    assert r.status_code == status, r.text
    assert "detail" in r.json() and "Traceback" not in r.text


def test_a_chunked_body_over_the_limit_is_413(client, key):
    uid = new_user(client, key)

    def chunks():  # no Content-Length: the server must count what it reads
        for _ in range(MAX_BODY // 65536 + 2):
            yield b"x" * 65536

    r = client.post(f"/v1/users/{uid}/comparisons", headers={**auth(key),
                    "Content-Type": "application/json"}, content=chunks())
    assert r.status_code == 413, r.text


@pytest.mark.parametrize("uid", ["%00", "x" * 300, "not-a-user", "0" * 32])
def test_odd_user_ids_are_404(client, key, uid):
    r = client.get(f"/v1/users/{uid}/latent", headers=auth(key))
    assert r.status_code == 404 and "detail" in r.json()


def test_bad_score_and_query_requests(client, key):
    uid = new_user(client, key)
    h = auth(key)
    assert client.post(f"/v1/users/{uid}/score", headers=h, json={"responses": []}
                       ).status_code == 422
    assert client.post(f"/v1/users/{uid}/score", headers=h, json={"prompt": 3,
                       "responses": ["a"]}).status_code == 422
    assert client.post(f"/v1/users/{uid}/next-query", headers=h, json={"candidates": []}
                       ).status_code == 422
    assert client.post(f"/v1/users/{uid}/next-query", headers=h, json=[1, 2]).status_code == 422


def test_annotation_flow_with_a_user_token(client, key, service):
    uid = new_user(client, key)
    token = client.post(f"/v1/users/{uid}/token", headers=auth(key)).json()["token"]
    assert client.get("/v1/annotate/next", headers=auth(key)).status_code == 401  # a key is not a token
    seen = set()
    for _ in range(len(service.pool)):
        q = client.get("/v1/annotate/next", headers=auth(token)).json()
        assert q["index"] is not None and q["index"] not in seen
        seen.add(q["index"])
        r = client.post("/v1/annotate/answer", headers=auth(token),
                        json={"index": q["index"], "choice": "a"})
        assert r.status_code == 200
    done = client.get("/v1/annotate/next", headers=auth(token)).json()
    assert done["index"] is None and done["remaining"] == 0
    assert done["n_answers"] == len(service.pool) and 0.0 <= done["certainty"] <= 1.0
    assert client.post("/v1/annotate/answer", headers=auth(token),
                       json={"index": 99, "choice": "a"}).status_code == 422
    assert client.post("/v1/annotate/answer", headers=auth(token),
                       json={"index": 0, "choice": "c"}).status_code == 422
    page = client.get("/")
    assert page.status_code == 200 and "/v1/annotate/next" in page.text


def test_openapi_docs_are_served(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/users", "/v1/users/{user_id}/score", "/v1/users/{user_id}/next-query"} <= set(paths)


def test_answers_survive_a_restart_and_a_new_run(run_dir, tmp_path, pets):
    db = sqlite_url(tmp_path / "s.sqlite")
    first = build_service(str(run_dir), db)
    k = first.store.create_key()
    kid = first.store.key_id(k)
    uid = first.store.create_user(kid)
    first.store.add_answers(kid, uid, [(r["prompt"], r["chosen"], r["rejected"])
                                       for r in user_comparisons(pets, "helpful_first", 5)])
    mean1, _, n1 = first.latent(kid, uid)
    first.store.dispose()
    second = build_service(str(run_dir), db)
    mean2, _, n2 = second.latent(second.store.key_id(k), uid)
    assert n1 == n2 == 5 and np.allclose(mean1, mean2, atol=1e-6)


def test_pool_and_context_files_report_the_bad_line(tmp_path):
    from vpl.data.schema import DataError
    from vpl.serve.service import load_pool

    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"a": "x", "b": "y"}\n\n{"a": "x"}\n')
    with pytest.raises(DataError, match=r"pool.jsonl:3: field 'b': missing field"):
        load_pool(pool)
    pool.write_text('{"a": "x", "b": ""}\n')
    with pytest.raises(DataError, match=r"pool.jsonl:1: field 'b': expected a non-empty"):
        load_pool(pool)
    pool.write_text('{"a": "x", "b": "y"}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"pool.jsonl:2: expected an object"):
        load_pool(pool)
    pool.write_text("")
    with pytest.raises(DataError, match="no candidate comparisons"):
        load_pool(pool)


def test_item_vectors_come_from_memory_the_second_time(service, monkeypatch):
    items = [("a prompt", "a response seen once"), ("a prompt", "and another one")]
    first = service.scorer.vectors(items)
    fresh = torch.from_numpy(service.scorer._embed(items))
    torch.testing.assert_close(first, fresh)

    def no_embedding(_):
        raise AssertionError("embedded again")

    monkeypatch.setattr(service.scorer, "_embed", no_embedding)
    torch.testing.assert_close(service.scorer.vectors(items[::-1]), first.flip(0))


def test_a_run_without_a_latent_scores_everyone_alike_and_asks_nothing(pets, tmp_path):
    from vpl.cli import main

    run = tmp_path / "btl"
    assert main(["train", "--data", str(pets / "train.jsonl"), "--model", "btl", "--out",
                 str(run), "--epochs", "2", "--quiet"]) == 0
    svc = build_service(str(run), sqlite_url(tmp_path / "b.sqlite"))
    client = TestClient(create_app(svc))
    k = auth(svc.store.create_key())
    a = client.post("/v1/users", headers=k).json()["user_id"]
    b = client.post("/v1/users", headers=k).json()["user_id"]
    client.post(f"/v1/users/{a}/comparisons", headers=k,
                json={"comparisons": user_comparisons(pets, "helpful_first", 4)})
    body = {"prompt": "q", "responses": ["one", "two"]}
    sa = client.post(f"/v1/users/{a}/score", headers=k, json=body).json()["scores"]
    sb = client.post(f"/v1/users/{b}/score", headers=k, json=body).json()["scores"]
    assert sa == sb and all(s["std"] == 0 for s in sa)
    r = client.post(f"/v1/users/{a}/next-query", headers=k,
                    json={"candidates": [{"a": "x", "b": "y"}]})
    assert r.status_code == 409 and "no user latent" in r.json()["detail"]
