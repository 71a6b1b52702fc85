"""Load benchmark of the personalization service (`vpl serve`), a real server on 127.0.0.1.

- Scoring: C concurrent clients, each scoring 16 short candidate responses for its own known
  user (8 answers stored), request after request: p50 / p99 latency and throughput, once with
  texts the server has embedded before (cached) and once with new texts in every request.
- Answers: C concurrent clients each adding N answers for their own user, one answer per request
  with a client request id, every tenth request retried: stored answers counted in the database
  afterwards (exactly N per user), on SQLite and PostgreSQL.
- Crash: the same load, the server killed with SIGKILL in the middle of it and started again:
  the database opens and every acknowledged answer is there.

Usage: python benchmarks/serve_bench.py [--run RUN_DIR] [--out benchmarks/results/serve.md]
       [--clients 8] [--answers 500] [--workers 2] [--skip-postgres]
Without --run, a VPL run is trained on a small Pets controversial set first.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import httpx
import numpy as np

from vpl.data.io import atomic_write_text, load_records, write_jsonl
from vpl.data.pets import generate_pets
from vpl.experiments.report import git_commit
from vpl.experiments.runs import train_run
from vpl.serve.store import Store, sqlite_url
from vpl.serve.testing import (
    kill_server,
    postgres_available,
    running_server,
    throwaway_postgres,
)

WORDS = ["calm", "clear", "brief", "warm", "formal", "playful", "careful", "vivid", "plain",
         "gentle", "direct", "lively", "patient", "honest", "modest", "bold"]


def train_small_run(work: Path) -> tuple[Path, Path]:
    """(run directory, test comparisons) of VPL trained on a small Pets controversial set."""
    train, test = generate_pets("controversial", seed=0, users_per_type=20,
                                test_users_per_type=4, pairs_per_user=16)
    write_jsonl(work / "train.jsonl", train)
    write_jsonl(work / "test.jsonl", test)
    train_run(work / "train.jsonl", "vpl", work / "run", progress=False)
    return work / "run", work / "test.jsonl"


def parallel(n: int, fn: Callable[[int], object]) -> list[object]:
    """fn(0..n-1) on n threads at once; their results in order (exceptions re-raised)."""
    out: list[object] = [None] * n
    errors: list[BaseException] = []

    def call(i: int) -> None:
        try:
            out[i] = fn(i)
        except BaseException as exc:  # noqa: BLE001 (re-raised below)
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return out


def new_user(http: httpx.Client, comps: list[dict]) -> str:
    uid = http.post("/v1/users").json()["user_id"]
    if comps:
        http.post(f"/v1/users/{uid}/comparisons", json={"comparisons": comps}).raise_for_status()
    return uid


def scoring(url: str, key: str, comps: list[dict], clients: int, requests: int
            ) -> dict[tuple[str, int], dict[str, float]]:
    """Latency (ms) and throughput of scoring 16 candidates, cached and new texts, by one
    client alone and by `clients` at once."""
    prompt = comps[0]["prompt"]
    fixed = [f"A {WORDS[j]} answer, number {j}." for j in range(16)]
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"},
                      timeout=120) as http:
        users = [new_user(http, comps) for _ in range(clients)]
        for uid in users:  # warm: each user's posterior, and the fixed texts' embeddings
            http.post(f"/v1/users/{uid}/score", json={"prompt": prompt, "responses": fixed})
    out = {}
    for mode, n_clients in (("cached", 1), ("cached", clients), ("new", 1), ("new", clients)):
        lat, wall = asyncio.run(_score_load(url, key, users, prompt, fixed, mode, n_clients,
                                            requests))
        out[mode, n_clients] = {"p50": float(np.percentile(lat, 50)),
                                "p99": float(np.percentile(lat, 99)), "mean": float(lat.mean()),
                                "rps": len(lat) / wall, "n": len(lat)}
    return out


async def _score_load(url: str, key: str, users: list[str], prompt: str, fixed: list[str],
                      mode: str, clients: int, requests: int) -> tuple[np.ndarray, float]:
    """`clients` concurrent clients (asyncio tasks on one thread, so the load generator itself
    holds no lock against its own threads) scoring request after request: latencies (ms) and
    wall seconds."""

    run_tag = uuid.uuid4().hex[:8]

    async def client(http: httpx.AsyncClient, c: int) -> list[float]:
        lat = []
        rng = np.random.default_rng(c)
        for i in range(requests):
            texts = fixed if mode == "cached" else [  # never embedded before, in any run
                f"{' '.join(rng.choice(WORDS, 4))} reply {run_tag}.{clients}.{c}.{i}.{j}"
                for j in range(16)]
            t0 = time.perf_counter()
            r = await http.post(f"/v1/users/{users[c]}/score",
                                json={"prompt": prompt, "responses": texts})
            lat.append(time.perf_counter() - t0)
            r.raise_for_status()
            assert len(r.json()["scores"]) == 16
        return lat

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"},
                                 timeout=120, limits=limits) as http:
        t0 = time.perf_counter()
        lat = await asyncio.gather(*(client(http, c) for c in range(clients)))
        wall = time.perf_counter() - t0
    return np.concatenate(lat) * 1e3, wall


def add_answers(url: str, key: str, uid: str, c: int, n: int, acked: list[int],
                stop: threading.Event | None = None) -> None:
    """Client c adds n answers to its user, one per request (every tenth retried); counts the
    acknowledged ones in acked[c]; stops quietly when the server goes away."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"},
                      timeout=60) as http:
        for i in range(n):
            body = {"comparisons": [{"prompt": "p", "chosen": f"c{c} {i}",
                                     "rejected": f"r{c} {i}"}], "request_id": str(i)}
            for _ in range(2 if i % 10 == 0 else 1):
                try:
                    r = http.post(f"/v1/users/{uid}/comparisons", json=body)
                except httpx.HTTPError:
                    if stop is not None and stop.is_set():
                        return
                    raise
                r.raise_for_status()
            acked[c] += 1


def answers_load(run: Path, db: str, key: str, clients: int, n: int, flags: list[str]) -> dict:
    """C clients x n answers: stored counts per user, time."""
    with running_server(run, db, *flags) as (url, _):
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as http:
            users = [new_user(http, []) for _ in range(clients)]
        acked = [0] * clients
        t0 = time.perf_counter()
        parallel(clients, lambda c: add_answers(url, key, users[c], c, n, acked))
        wall = time.perf_counter() - t0
    store = Store(db)
    counts = [store.count_answers(u) for u in users]
    store.dispose()
    return {"acked": sum(acked), "stored": sum(counts), "exact": all(x == n for x in counts),
            "seconds": wall, "aps": sum(acked) / wall}


def crash(run: Path, db: str, key: str, clients: int, n: int, flags: list[str],
          after: float = 3.0) -> dict:
    """The answers load, SIGKILL after `after` seconds, restart: acknowledged answers kept."""
    stop = threading.Event()
    acked = [0] * clients
    with running_server(run, db, *flags) as (url, proc):
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as http:
            users = [new_user(http, []) for _ in range(clients)]
        threads = [threading.Thread(target=add_answers, args=(url, key, users[c], c, n, acked,
                                                              stop)) for c in range(clients)]
        for t in threads:
            t.start()
        time.sleep(after)
        stop.set()
        kill_server(proc)  # SIGKILL to the uvicorn supervisor and its workers
        for t in threads:
            t.join(120)
    with running_server(run, db) as (url, _), httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}) as http:
        found = [http.get(f"/v1/users/{u}/latent").json()["n_answers"] for u in users]
    lost = sum(max(a - f, 0) for a, f in zip(acked, found, strict=True))
    extra = sum(max(f - a, 0) for a, f in zip(acked, found, strict=True))
    return {"acked": sum(acked), "found": sum(found), "lost": lost, "unacked_kept": extra}


def report(args: argparse.Namespace, score: dict, loads: dict, crashes: dict) -> str:
    lines = [
        "# Service load benchmark (`vpl serve`)", "",
        f"`python benchmarks/serve_bench.py --clients {args.clients} --answers {args.answers} "
        f"--workers {args.workers} --request-threads {args.request_threads}`, commit "
        f"`{git_commit()}`, 2 CPU cores, server and clients on the same machine; "
        f"{args.workers} server worker processes, each working on up to "
        f"{args.request_threads} requests at once with 1 torch thread.", "",
        "## Scoring 16 short candidates for a known user (8 answers stored)", "",
        "| texts | concurrent clients | requests | p50 ms | p99 ms | mean ms | requests/s | "
        "responses/s |", "|---|---|---|---|---|---|---|---|"]
    for (mode, n), s in score.items():
        lines.append(f"| {mode} | {n} | {s['n']} | {s['p50']:.1f} | {s['p99']:.1f} | {s['mean']:.1f} "
                     f"| {s['rps']:.1f} | {16 * s['rps']:.0f} |")
    lines += ["", f"## {args.clients} clients adding {args.answers} answers each (one per "
              "request, every tenth request retried with its request id)", "",
              "| database | acknowledged | stored | exactly once per user | seconds | "
              "answers/s |", "|---|---|---|---|---|---|"]
    for db, r in loads.items():
        lines.append(f"| {db} | {r['acked']} | {r['stored']} | {'yes' if r['exact'] else 'NO'} "
                     f"| {r['seconds']:.1f} | {r['aps']:.0f} |")
    lines += ["", "## Server killed (SIGKILL) in the middle of that load, then restarted", "",
              "| database | acknowledged before the kill | found after restart | "
              "acknowledged but lost | stored but not acknowledged |", "|---|---|---|---|---|"]
    for db, r in crashes.items():
        lines.append(f"| {db} | {r['acked']} | {r['found']} | {r['lost']} | "
                     f"{r['unacked_kept']} |")
    return "\n".join(lines) + "\n"


def server_flags(args: argparse.Namespace) -> list[str]:
    return ["--workers", str(args.workers), "--request-threads", str(args.request_threads)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", help="a trained latent run (default: train a small Pets one)")
    ap.add_argument("--out", default="benchmarks/results/serve.md")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=40, help="scoring requests per client")
    ap.add_argument("--answers", type=int, default=500, help="answers per client")
    ap.add_argument("--workers", type=int, default=2, help="server worker processes")
    ap.add_argument("--request-threads", type=int, default=4,
                    help="requests each server process works on at once")
    ap.add_argument("--skip-postgres", action="store_true")
    ap.add_argument("--only-scoring", action="store_true", help="skip the answer loads")
    args = ap.parse_args()
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vpl-serve-")))
        run, test = train_small_run(work) if args.run is None else (Path(args.run), None)
        comps = []
        if test is not None:
            records, _ = load_records(test)
            uid = records[0].user_id
            comps = [{"prompt": r.prompt, "chosen": r.chosen, "rejected": r.rejected}
                     for r in records if r.user_id == uid][:8]
        dbs = {"SQLite": sqlite_url(work / "serve.sqlite")}
        if not args.skip_postgres and postgres_available():
            dbs["PostgreSQL"] = stack.enter_context(throwaway_postgres())
        keys = {}
        for name, db in dbs.items():
            store = Store(db)
            keys[name] = store.create_key("bench")
            store.dispose()
        with running_server(run, dbs["SQLite"], *server_flags(args)) as (url, _):
            score = scoring(url, keys["SQLite"], comps or [{"prompt": "", "chosen": "yes",
                                                              "rejected": "no"}],
                            args.clients, args.requests)
        print(score, flush=True)
        if args.only_scoring:
            return
        loads = {name: answers_load(run, db, keys[name], args.clients, args.answers,
                                    server_flags(args)) for name, db in dbs.items()}
        print(loads, flush=True)
        crashes = {name: crash(run, db, keys[name], args.clients, args.answers,
                                server_flags(args)) for name, db in dbs.items()}
        print(crashes, flush=True)
    text = report(args, score, loads, crashes)
    atomic_write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
