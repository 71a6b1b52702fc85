"""`vpl serve` (the HTTP service), `vpl serve keys create` and `vpl score` (the same scoring
without a server)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

DEFAULT_DB = "vpl-serve.sqlite"
"""The SQLite file used without `--db` (in the working directory)."""

ENV_RUN, ENV_DB, ENV_POOL = "VPL_SERVE_RUN", "VPL_SERVE_DB", "VPL_SERVE_POOL"


def db_url(given: str | None) -> str:
    """A database URL from `--db`: a SQLAlchemy URL, or a path taken as a SQLite file."""
    from vpl.serve.store import sqlite_url

    given = given or DEFAULT_DB
    return given if "://" in given else sqlite_url(given)


def add_serve_commands(sub: argparse._SubParsersAction) -> None:
    """Register `serve` and `score` on the main CLI's subparsers."""
    s = sub.add_parser("serve", help="HTTP service: learn users online and score for them",
                       description="Serve a trained run over HTTP (OpenAPI docs at /docs, the "
                       "annotation page at /). Users and answers live in the database.")
    s.add_argument("--run", help="run directory of a trained latent model (`vpl train`)")
    s.add_argument("--db", default=None, help=f"database: a SQLAlchemy URL (e.g. postgresql+"
                   f"psycopg://user@host/db) or a SQLite file (default: ./{DEFAULT_DB})")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--workers", type=int, default=1, help="server processes sharing the database")
    s.add_argument("--pool", default=None,
                   help="JSONL of candidate comparisons {prompt, a, b} for the annotation page")
    s.add_argument("--threads", type=int, default=1, help="torch threads per process")
    s.add_argument("--request-threads", type=int, default=4,
                   help="requests one process works on at once (more processes scale better "
                   "than more threads: see benchmarks/results/serve.md)")
    s.set_defaults(func=cmd_serve, serve_command=None)
    ssub = s.add_subparsers(dest="serve_command")
    keys = ssub.add_parser("keys", help="API keys").add_subparsers(dest="keys_command",
                                                                    required=True)
    create = keys.add_parser("create", help="create an API key and print it (shown once)")
    create.add_argument("--db", default=None, help="database URL or SQLite file")
    create.add_argument("--name", default="", help="a label for the key")
    create.set_defaults(func=cmd_keys_create)

    sc = sub.add_parser("score", help="score responses for a user from their comparisons, "
                        "without a server")
    sc.add_argument("--run", required=True, help="run directory of a trained latent model")
    sc.add_argument("--context", default=None,
                    help="JSONL of the user's comparisons {prompt, chosen, rejected} (default: "
                    "none, the population's scores)")
    sc.add_argument("--prompt", default="")
    sc.add_argument("--responses", nargs="+", default=None)
    sc.add_argument("--requests", default=None,
                    help="JSONL of {prompt, responses} requests instead of --prompt/--responses")
    sc.set_defaults(func=cmd_score)


def build_service(run: str, db: str, pool: str | None = None, *, migrate: bool = True) -> Any:
    """A `Service` over a database URL and a run directory (schema upgraded first unless
    `migrate` is False)."""
    from vpl.serve.scorer import RunScorer
    from vpl.serve.service import Service, load_pool
    from vpl.serve.store import Store

    return Service(Store(db, migrate=migrate), RunScorer(run), load_pool(pool) if pool else None)


def app_from_env() -> Any:
    """The app of a server process, configured by `vpl serve` through the environment (so
    several worker processes can build it)."""
    import torch

    from vpl.serve.app import create_app

    torch.set_num_threads(int(os.environ.get("VPL_SERVE_THREADS", "1")))
    return create_app(build_service(os.environ[ENV_RUN], os.environ[ENV_DB],
                                    os.environ.get(ENV_POOL) or None, migrate=False),
                      request_threads=int(os.environ.get("VPL_SERVE_REQUEST_THREADS", "4")))


def log_config() -> dict[str, Any]:
    """uvicorn's logging setup plus one line per request from `vpl.serve` (applied in every
    worker process, which a `basicConfig` in the parent would not reach)."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg["loggers"]["vpl.serve"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return cfg


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from vpl.serve.service import load_pool
    from vpl.serve.store import Store

    if not args.run:
        raise ValueError("vpl serve needs --run RUN_DIR")
    if not (Path(args.run) / "run.json").exists():
        raise FileNotFoundError(f"{args.run}: not a vpl run directory (no run.json)")
    url = db_url(args.db)
    Store(url).dispose()  # migrate once, before any worker starts
    if args.pool:
        load_pool(args.pool)  # report a bad pool file before starting
    os.environ.update({ENV_RUN: str(Path(args.run).resolve()), ENV_DB: url,
                       ENV_POOL: str(Path(args.pool).resolve()) if args.pool else "",
                       "VPL_SERVE_THREADS": str(args.threads),
                       "VPL_SERVE_REQUEST_THREADS": str(args.request_threads)})
    uvicorn.run("vpl.serve.cli:app_from_env", factory=True, host=args.host, port=args.port,
                workers=args.workers, access_log=False, log_level="info",
                log_config=log_config())
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    from vpl.serve.store import Store

    store = Store(db_url(args.db))
    print(store.create_key(args.name))
    store.dispose()
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from vpl.data.schema import DataError
    from vpl.serve.scorer import RunScorer
    from vpl.serve.service import read_objects, text_of

    if (args.requests is None) == (args.responses is None):
        raise ValueError("give either --responses R1 R2 ... or --requests FILE")
    ctx = read_objects(args.context, ("chosen", "rejected")) if args.context else []
    cols = [[text_of(row, f, source=args.context, line=n, empty=f == "prompt") for n, row in ctx]
            for f in ("prompt", "chosen", "rejected")]
    if args.requests:
        requests = []
        for n, row in read_objects(args.requests, ("responses",)):
            resp = row["responses"]
            if not isinstance(resp, list) or not resp or not all(
                    isinstance(x, str) and x for x in resp):
                raise DataError("expected a non-empty list of non-empty strings",
                                source=args.requests, line=n, field_name="responses")
            requests.append((text_of(row, "prompt", source=args.requests, line=n), resp))
    else:
        requests = [(args.prompt, args.responses)]
    scorer = RunScorer(args.run)
    belief = scorer.belief("cli", len(ctx), *cols)
    for prompt, responses in requests:
        mean, std = scorer.score(belief, prompt, responses)
        out = {"scores": [{"reward": float(m), "std": float(s)} for m, s in zip(mean, std,
                                                                             strict=True)],
               "best": int(mean.argmax())}
        sys.stdout.write(json.dumps(out) + "\n")
    return 0
