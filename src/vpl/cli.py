"""The `vpl` command line: thin commands over the library.

    vpl data pets|personas|maze|check ...   generate or validate preference data
    vpl train --data FILE --model M --out RUN_DIR
    vpl evaluate --run RUN_DIR --data FILE --context-size K [--json]
    vpl demo                                 Pets end to end: BTL vs VPL
    vpl bench --suite SUITE --out DIR
    vpl control run ...                      personalized policies in a maze
    vpl active --run RUN_DIR --data FILE ... active query selection for new users
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from vpl.cliargs import add_config_args, from_args
from vpl.data.io import FieldMap
from vpl.data.schema import DataError

FIELD_FLAGS = {"user": "user-field", "prompt": "prompt-field", "chosen": "chosen-field",
               "rejected": "rejected-field"}


def _add_fields(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("field names in the data")
    add_config_args(g, FieldMap, names=FIELD_FLAGS)
    g.add_argument("--on-error", choices=("abort", "skip"), default="abort",
                   help="abort at the first bad row (default) or skip and count bad rows")


def _add_item_dim(p: argparse.ArgumentParser) -> None:
    from vpl.embed import DEFAULT_ITEM_DIM

    p.add_argument("--item-dim", type=int, default=DEFAULT_ITEM_DIM,
                   help="project item vectors wider than this onto as many principal components "
                        f"of the training items; 0: never (default: {DEFAULT_ITEM_DIM})")


def _add_identity(p: argparse.ArgumentParser) -> None:
    p.add_argument("--identity", choices=("auto", "off"), default="off",
                   help="auto: append item identity codes where the training items recur across "
                        "users (collaborative signal; new items keep their text vector); off "
                        "(default: it has not helped on the real data yet, docs/models.md)")


def _fields(args: argparse.Namespace) -> FieldMap:
    return from_args(FieldMap, args)


def _fields_given(args: argparse.Namespace) -> bool:
    return _fields(args) != FieldMap()


def _write_split(out: str, train: list[dict], test: list[dict]) -> None:
    from vpl.data.io import write_jsonl

    n_tr = write_jsonl(Path(out) / "train.jsonl", train)
    n_te = write_jsonl(Path(out) / "test.jsonl", test)
    users = len({r["user_id"] for r in train}), len({r["user_id"] for r in test})
    print(f"wrote {out}/train.jsonl ({n_tr} pairs, {users[0]} users) and "
          f"{out}/test.jsonl ({n_te} pairs, {users[1]} unseen users)")


def cmd_data_pets(args: argparse.Namespace) -> int:
    from vpl.data.pets import generate_pets

    _write_split(args.out, *generate_pets(args.variant, seed=args.seed))
    return 0


def cmd_data_personas(args: argparse.Namespace) -> int:
    from vpl.data.personas import generate_personas

    _write_split(args.out, *generate_personas(args.users, seed=args.seed))
    return 0


def cmd_data_from_ratings(args: argparse.Namespace) -> int:
    from vpl.data.ratings import RatingsConfig, from_ratings

    counts = from_ratings(args.ratings, args.out, args.items, from_args(RatingsConfig, args),
                          on_error=args.on_error)
    print(f"{counts['ratings']} ratings ({counts['skipped']} skipped) of {counts['items']} items "
          f"-> {args.out}/train.jsonl ({counts['pairs_train']} pairs, {counts['users_train']} "
          f"users) and {args.out}/test.jsonl ({counts['pairs_test']} pairs, "
          f"{counts['users_test']} unseen users)")
    return 0


def cmd_data_store(args: argparse.Namespace) -> int:
    from vpl.data.store import build_store, store_info
    from vpl.embed import DEFAULT_ENCODER
    from vpl.embed.encoders import make_encoder

    name = args.embed_model or DEFAULT_ENCODER
    out = build_store(args.data, args.out, make_encoder(name, progress=not args.quiet),
                      fields=_fields(args), chunk=args.chunk, progress=not args.quiet,
                      embed_model=name)
    info = store_info(out)
    print(f"store {out}: {info['pairs']} comparisons of {len(info['users'])} users over "
          f"{info['items']} items ({info['dim']}-d)")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from collections import Counter

    from vpl.data.io import load_records

    records, report = load_records(args.data, _fields(args), on_error=args.on_error)
    per_user = Counter(r.user_id for r in records)
    counts = sorted(per_user.values())
    print(f"{report.kept} valid comparisons from {len(per_user)} users "
          f"({report.skipped} skipped of {report.rows} rows)")
    print(f"pairs per user: min {counts[0]}, median {counts[len(counts) // 2]}, max {counts[-1]}")
    for reason, n in report.reasons.most_common():
        print(f"  skipped {n}: {reason}")
    return 0


def parse_options(pairs: list[str], flag: str = "--option") -> dict:
    """Config overrides from `KEY=VALUE` items of `flag` (values parsed as JSON where they
    are JSON, else kept as strings)."""
    opts = {}
    for item in pairs:
        if "=" not in item:
            raise SystemExit(f"{flag} expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            opts[k] = json.loads(v)
        except json.JSONDecodeError:
            opts[k] = v
    return opts


def _fmt(x: float | None) -> str:
    return "  -  " if x is None or x != x else f"{x:.3f}"


def cmd_train(args: argparse.Namespace) -> int:
    from vpl.experiments.runs import train_run, train_store_run
    from vpl.train import TrainConfig, make_logger
    from vpl.train.finetune import LoRAConfig

    lora = from_args(LoRAConfig, args) if args.finetune == "lora" else None
    if args.store:  # the store's vectors are made: no encoder, projection or fine-tuning
        if lora is not None:
            raise SystemExit("vpl train: --finetune lora embeds texts; use --data, not --store")
        m = train_store_run(args.store, args.model, args.out,
                            train_config=from_args(TrainConfig, args),
                            model_options=parse_options(args.option),
                            test_users=args.test_users, heldout_pairs=args.heldout_pairs,
                            progress=not args.quiet, logger=make_logger(args.log))
    else:
        m = train_run(args.data, args.model, args.out, train_config=from_args(TrainConfig, args),
                      lora=lora,
                      model_options=parse_options(args.option), fields=_fields(args),
                      logger=make_logger(args.log), identity=args.identity,
                      test_users=args.test_users, heldout_pairs=args.heldout_pairs,
                      on_error=args.on_error, embed_model=args.embed_model,
                      item_dim=args.item_dim, progress=not args.quiet)
    if "rank" in m:  # a process other than rank 0 of a distributed run: rank 0 reports
        return 0
    print(f"{args.model}: K={m['context_size']}  seen-users held-out accuracy "
          f"{_fmt(m.get('accuracy_seen_users'))}  unseen-users accuracy "
          f"{_fmt(m.get('accuracy_unseen_users'))}  ({m['train_seconds']:.1f}s training)")
    if "latent" in m:
        d = m["latent"]
        print(f"latent: {d['active_units']}/{d['latent_dim']} active units, between-user std "
              f"{d['between_user_std']:.3f} vs within-user {d['within_user_std']:.3f}")
    print(f"run saved to {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from vpl.checkpoint import load_model
    from vpl.evaluate import evaluate_pairs
    from vpl.experiments.prepare import (
        check_item_dim,
        load_pairs,
        open_store_for_run,
        run_users,
    )

    model = load_model(args.run)
    if args.store:
        if _fields_given(args):
            raise ValueError("--store holds embedded comparisons: field names apply to --data")
        data = open_store_for_run(args.store, args.run)
    else:
        data = load_pairs(args.data, args.run,
                          fields=_fields(args) if _fields_given(args) else None,
                          on_error=args.on_error, progress=not args.json)
    source = args.store or args.data
    check_item_dim(data, model.input_dim, source, args.run)
    data = run_users(data, args.run, args.users)
    scores = evaluate_pairs(model, data, context_size=args.context_size, seed=args.seed)
    summary = {"model": model.name, "context_size": args.context_size, "users": args.users,
               **scores.summary()}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{model.name} on {source} ({args.users} users), K={args.context_size}: "
          f"accuracy {summary['accuracy']:.4f}"
          f" (item-disjoint {_fmt(summary['accuracy_item_disjoint'])}) over "
          f"{summary['n_pairs']} pairs of {summary['n_users']} users")
    print(f"worst user {summary['worst_user_accuracy']:.3f}, NLL {summary['nll']:.3f}, "
          f"ECE {summary['ece']:.3f}")
    per_user = summary["per_user"]
    shown = sorted(per_user.items(), key=lambda kv: kv[1])
    if len(shown) > 20:
        print(f"per user (20 worst of {len(shown)}):")
        shown = shown[:20]
    else:
        print("per user:")
    for u, a in shown:
        print(f"  {u:<30} {a:.3f}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from vpl.experiments.demo import run_demo

    run_demo(args.out, seed=args.seed, epochs=args.epochs)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from vpl.experiments.bench import JobsFailed, run_bench

    try:
        run_bench(args.suite, args.out, seeds=args.seeds, models=args.models,
                  datasets=args.datasets, train=parse_options(args.train, "--train"),
                  jobs=args.jobs, hh_path=args.hh_data,
                  progress=not args.quiet, embed_model=args.embed_model,
                  item_dim=args.item_dim, identity=args.identity)
    except JobsFailed as exc:
        print(f"vpl: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    """`vpl data pets | personas | from-ratings | check | maze`."""
    from vpl.data.ratings import RatingsConfig

    d = sub.add_parser("data", help="generate or check preference data")
    dsub = d.add_subparsers(dest="data_command", required=True)
    pets = dsub.add_parser("pets", help="synthetic Pets data (two user types)")
    pets.add_argument("--variant", choices=("full", "controversial"), default="full")
    pets.add_argument("--out", required=True)
    pets.add_argument("--seed", type=int, default=0)
    pets.set_defaults(func=cmd_data_pets)
    per = dsub.add_parser("personas", help="synthetic persona data (2, 4 types or continuous)")
    per.add_argument("--users", choices=("2", "4", "continuous"), default="4")
    per.add_argument("--out", required=True)
    per.add_argument("--seed", type=int, default=0)
    per.set_defaults(func=cmd_data_personas)
    fr = dsub.add_parser("from-ratings", help="turn a ratings table into comparisons")
    fr.add_argument("--ratings", required=True, help="ratings table (CSV, Parquet, JSONL)")
    fr.add_argument("--items", default=None,
                    help="items table with the texts, joined on the item field (optional)")
    fr.add_argument("--out", required=True, help="folder for train.jsonl and test.jsonl")
    add_config_args(fr, RatingsConfig)
    fr.add_argument("--on-error", choices=("abort", "skip"), default="abort",
                    help="abort at the first bad row (default) or skip and count bad rows")
    fr.set_defaults(func=cmd_data_from_ratings)
    st = dsub.add_parser("store", help="embed comparisons into a memory-mapped store, a chunk "
                         "at a time (for data larger than memory; vpl train --store)")
    st.add_argument("--data", required=True, nargs="+", help="data file(s) or directory")
    st.add_argument("--out", required=True, help="store directory to write")
    st.add_argument("--embed-model", default=None, help="text encoder, as for vpl train")
    st.add_argument("--chunk", type=int, default=10_000, help="comparisons per chunk")
    st.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_fields(st)
    st.set_defaults(func=cmd_data_store)
    chk = dsub.add_parser("check", help="validate a data file and print its statistics")
    chk.add_argument("--data", required=True, nargs="+")
    _add_fields(chk)
    chk.set_defaults(func=cmd_data_check)
    try:
        from vpl.control.cli import add_maze_data_parser
    except ImportError:
        pass
    else:
        add_maze_data_parser(dsub)


def _add_train_command(sub: argparse._SubParsersAction) -> None:
    """`vpl train`: every `TrainConfig` field is a flag."""
    from vpl.models import REGISTRY
    from vpl.models.presets import PRESETS
    from vpl.train import TrainConfig
    from vpl.train.finetune import LoRAConfig

    t = sub.add_parser("train", help="train a reward model and save a run directory")
    src = t.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", nargs="+", help="data file(s) or directory")
    src.add_argument("--store", help="a memory-mapped store (vpl data store) instead: the item "
                     "vectors stay on disk")
    t.add_argument("--model", default="vpl", choices=sorted({*REGISTRY, *PRESETS}),
                   help="a model or a preset of vpl.models.presets (default: vpl)")
    t.add_argument("--out", required=True, help="run directory to write")
    add_config_args(t.add_argument_group("training (vpl.train.TrainConfig)"), TrainConfig)
    t.add_argument("--log", default=None, metavar="KIND:TARGET",
                   help="also log training metrics: tensorboard:DIR or wandb:PROJECT")
    t.add_argument("--test-users", type=float, default=0.2, help="fraction of unseen users")
    t.add_argument("--heldout-pairs", type=float, default=0.2,
                   help="fraction of each seen user's pairs held out")
    t.add_argument("--embed-model", default=None,
                   help="text encoder: minilm (default: bundled:all-MiniLM-L6-v2#layers), a "
                        "sentence-transformers folder (#layers: layer pooling), smollm2 or "
                        "causal:PATH (#last|#mean, @LAYER); +onnx-int8 runs a sentence encoder "
                        "in ONNX Runtime with int8 weights")
    _add_item_dim(t)
    _add_identity(t)
    t.add_argument("--finetune", choices=("off", "lora"), default="off",
                   help="lora: fine-tune the causal-LM backbone (--embed-model smollm2 or "
                        "causal:PATH) with LoRA adapters through the model's loss")
    add_config_args(t.add_argument_group("LoRA fine-tuning (vpl.train.finetune.LoRAConfig)"),
                    LoRAConfig, skip=("target_modules",),
                    names={f: "lora-" + f.replace("_", "-") for f in (
                        "r", "alpha", "dropout", "lr", "epochs", "users_per_batch", "bf16")})
    t.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="model config override, e.g. --option latent_dim=8 (repeatable)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_fields(t)
    t.set_defaults(func=cmd_train)


def _add_embed_command(sub: argparse._SubParsersAction) -> None:
    """`vpl embed`: fill the embedding cache, sharded under torchrun."""
    e = sub.add_parser("embed", help="embed every text of data files into the cache ahead of "
                       "training (run under torchrun to shard it over processes)")
    e.add_argument("--data", required=True, nargs="+", help="data file(s) or directory")
    e.add_argument("--embed-model", default=None, help="encoder name, as for vpl train")
    e.add_argument("--chunk", type=int, default=512, help="texts written to the cache at once")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_fields(e)
    e.set_defaults(func=cmd_embed)


def cmd_embed(args: argparse.Namespace) -> int:
    from vpl.data.io import load_records
    from vpl.distributed import rank_and_world
    from vpl.embed import DEFAULT_ENCODER
    from vpl.embed.encoders import make_encoder
    from vpl.embed.precompute import precompute

    records, _ = load_records(args.data, _fields(args), on_error=args.on_error)
    rank, world = rank_and_world()
    r = precompute(records, make_encoder(args.embed_model or DEFAULT_ENCODER,
                                         progress=not args.quiet),
                   rank=rank, world=world, chunk=args.chunk)
    print(f"rank {r.rank}/{r.world}: {r.shard} of {r.texts} texts, {r.embedded} embedded, "
          f"{r.shard - r.embedded} already cached")
    return 0


def _add_evaluate_and_demo(sub: argparse._SubParsersAction) -> None:
    """`vpl evaluate` and `vpl demo`."""
    e = sub.add_parser("evaluate", help="accuracy of a trained run on a data file or store")
    e.add_argument("--run", required=True)
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", nargs="+", help="data file(s) or directory")
    src.add_argument("--store", help="a memory-mapped store (vpl data store) instead: the item "
                     "vectors stay on disk")
    e.add_argument("--users", choices=("all", "unseen"), default="all",
                   help="every user's pairs, or only the run's unseen users' (its split.json)")
    e.add_argument("--context-size", type=int, default=8)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--json", action="store_true", help="print JSON (key `accuracy`)")
    _add_fields(e)
    e.set_defaults(func=cmd_evaluate)

    dm = sub.add_parser("demo", help="Pets end to end: generate, embed, train BTL and VPL")
    dm.add_argument("--out", default="runs/demo")
    dm.add_argument("--seed", type=int, default=0)
    dm.add_argument("--epochs", type=int, default=None)
    dm.set_defaults(func=cmd_demo)


def _add_bench_command(sub: argparse._SubParsersAction) -> None:
    """`vpl bench`."""
    b = sub.add_parser("bench", help="every model on every dataset of a suite, with a report")
    b.add_argument("--suite", default="quick",
                   help="tiny, quick (< 10 min), hh (relabeled HH-RLHF only) or full")
    b.add_argument("--out", required=True, help="directory for report.md, results.json, PNGs")
    b.add_argument("--seeds", type=int, default=None, help="override the suite's seed count")
    b.add_argument("--models", nargs="+", default=None,
                   help="subset of models (default: the suite's); see vpl.experiments.suites.MODEL_VARIANTS")
    b.add_argument("--datasets", nargs="+", default=None,
                   help="subset of the suite's datasets by name, e.g. personas-continuous")
    b.add_argument("--jobs", type=int, default=0,
                   help="worker processes (default: one per CPU core)")
    b.add_argument("--hh-data", default=None,
                   help="relabeled HH-RLHF directory (default: $VPL_DATA_DIR/relabeled_hh_rlhf; "
                        "skipped when absent)")
    b.add_argument("--embed-model", default=None,
                   help="text encoder, as for vpl train")
    b.add_argument("--train", nargs="+", default=[], metavar="KEY=VALUE",
                   help="training options over the suite's, for every model, e.g. "
                        "users_per_batch=32 lr=0.002 (vpl.train.TrainConfig fields); the "
                        "report names them")
    _add_item_dim(b)
    _add_identity(b)
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    b.set_defaults(func=cmd_bench)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `vpl` command."""
    p = argparse.ArgumentParser(prog="vpl", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True)
    _add_data_commands(sub)
    _add_train_command(sub)
    _add_embed_command(sub)
    _add_evaluate_and_demo(sub)
    _add_bench_command(sub)
    for mod, fn in (("vpl.control.cli", "add_control_commands"),
                    ("vpl.active.cli", "add_active_command"),
                    ("vpl.serve.cli", "add_serve_commands"),
                    ("vpl.generation", "add_generate_command")):
        try:
            adder = getattr(__import__(mod, fromlist=[fn]), fn)
        except (ImportError, AttributeError):
            continue
        adder(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `vpl` console script."""
    from vpl.embed.offline import offline_defaults

    offline_defaults()  # first: the command modules may import Hugging Face libraries
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "embed_model", "unset") is None:
        from vpl.embed import DEFAULT_ENCODER

        args.embed_model = DEFAULT_ENCODER
    try:
        return int(args.func(args) or 0)
    except (DataError, FileNotFoundError, ValueError) as exc:
        print(f"vpl: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
