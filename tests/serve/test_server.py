"""A real server (uvicorn started by `vpl serve`), the database under concurrent writers on
SQLite and PostgreSQL, a killed server's acknowledged answers, and `vpl score`."""

from __future__ import annotations

import json
import subprocess
import threading

import httpx
import numpy as np
import pytest

from vpl.cli import main
from vpl.serve.store import Store, sqlite_url
from vpl.serve.testing import kill_server, running_server, vpl_command

from .test_api import user_comparisons


def create_key(db: str) -> str:
    out = subprocess.run(vpl_command("serve", "keys", "create", "--db", db, "--name", "t"),
                         check=True, capture_output=True, text=True).stdout.strip()
    assert out.startswith("vpl_") and len(out) > 30
    return out


def _rows(n: int, tag: str) -> list[tuple[str, str, str]]:
    return [(f"prompt {tag}", f"chosen {tag} {i}", f"rejected {tag} {i}") for i in range(n)]


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    url = (sqlite_url(tmp_path / "c.sqlite") if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    s = Store(url)
    yield s
    s.dispose()


def test_concurrent_writers_store_every_answer_exactly_once(store):
    kid = store.key_id(store.create_key())
    users = [store.create_user(kid) for _ in range(8)]
    errors: list[BaseException] = []

    def client(uid: str, c: int) -> None:
        try:
            for i in range(40):
                # every request is sent twice with its id: the retry must store nothing
                for _ in range(2):
                    store.add_answers(kid, uid, _rows(1, f"{c}-{i}"), request_id=f"r{i}")
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(u, c)) for c, u in enumerate(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert [store.count_answers(u) for u in users] == [40] * 8
    assert store.count_answers() == 320


def test_real_server_round_trip_and_restart_keep_answers(run_dir, pets, tmp_path):
    db = sqlite_url(tmp_path / "s.sqlite")
    key = create_key(db)
    auth = {"Authorization": f"Bearer {key}"}
    comps = user_comparisons(pets, "helpful_first", 6)
    with running_server(run_dir, db) as (url, _):
        assert httpx.get(f"{url}/health").json()["status"] == "ok"
        uid = httpx.post(f"{url}/v1/users", headers=auth).json()["user_id"]
        r = httpx.post(f"{url}/v1/users/{uid}/comparisons", headers=auth,
                       json={"comparisons": comps})
        assert r.json() == {"stored": 6, "total": 6}
        before = httpx.get(f"{url}/v1/users/{uid}/latent", headers=auth).json()
        assert httpx.get(f"{url}/v1/users", headers=auth).status_code == 405
    with running_server(run_dir, db) as (url, _):
        after = httpx.get(f"{url}/v1/users/{uid}/latent", headers=auth).json()
        assert after["n_answers"] == 6
        np.testing.assert_allclose(after["mean"], before["mean"], atol=1e-5)


def test_acknowledged_answers_survive_sigkill_mid_load(run_dir, tmp_path):
    db = sqlite_url(tmp_path / "k.sqlite")
    key = create_key(db)
    auth = {"Authorization": f"Bearer {key}"}
    acked: dict[str, int] = {}
    with running_server(run_dir, db) as (url, proc):
        users = [httpx.post(f"{url}/v1/users", headers=auth).json()["user_id"] for _ in range(4)]
        started = threading.Event()

        def client(uid: str, c: int) -> None:
            acked[uid] = 0
            with httpx.Client(base_url=url, headers=auth, timeout=10) as http:
                for i in range(400):  # bounded: the kill ends it long before
                    try:
                        r = http.post(f"/v1/users/{uid}/comparisons", json={
                            "comparisons": [{"prompt": "p", "chosen": f"c{c} {i}",
                                             "rejected": f"r{c} {i}"}],
                            "request_id": f"{i}"})
                    except httpx.HTTPError:
                        return  # the server is gone
                    assert r.status_code == 200
                    acked[uid] += 1
                    if acked[uid] == 10:
                        started.set()

        threads = [threading.Thread(target=client, args=(u, c)) for c, u in enumerate(users)]
        for t in threads:
            t.start()
        assert started.wait(60)
        kill_server(proc)
        for t in threads:
            t.join(60)
    assert sum(acked.values()) >= 10
    with running_server(run_dir, db) as (url, _):
        for uid in users:
            n = httpx.get(f"{url}/v1/users/{uid}/latent", headers=auth).json()["n_answers"]
            # every acknowledged answer is there; at most the one in flight besides
            assert acked[uid] <= n <= acked[uid] + 1


def test_score_command_ranks_responses_for_the_users_context(run_dir, pets, tmp_path, capsys):
    ctx = tmp_path / "user.jsonl"
    comps = user_comparisons(pets, "helpful_first", 8)
    ctx.write_text("\n".join(json.dumps(c) for c in comps) + "\n")
    c = comps[0]
    assert main(["score", "--run", str(run_dir), "--context", str(ctx), "--prompt",
                 c["prompt"], "--responses", c["rejected"], c["chosen"]]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["scores"]) == 2 and out["best"] == 1  # the answer the user gave
    reqs = tmp_path / "requests.jsonl"
    reqs.write_text(json.dumps({"prompt": c["prompt"], "responses": [c["chosen"]]}) + "\n"
                    + json.dumps({"prompt": "x", "responses": "not a list"}) + "\n")
    assert main(["score", "--run", str(run_dir), "--requests", str(reqs)]) == 2
    assert f"{reqs}:2: field 'responses'" in capsys.readouterr().err
