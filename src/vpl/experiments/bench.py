"""`vpl bench`: every model on every dataset of a suite, with few-shot curves, CIs and plots.

For each dataset the models train with their default options through the one training loop
(validation on held-out pairs of the training users), then score the test pairs with contexts
of K in the suite's list. Pets and personas test on their test files (unseen users, unseen
sentences; contexts from the same user's other test pairs); relabeled HH-RLHF has two users, so
it tests on held-out pairs of those users with contexts from their training pairs.

Outputs in OUT: `report.md` (tables, mean and 95% CI), `results.json` (every number),
`<dataset>_few_shot.png` (accuracy vs K) and `<dataset>_<model>_latent.png` (posterior means,
PCA, coloured by user type).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from vpl.data.io import FieldMap, atomic_write_text, load_records, records_from_dataset
from vpl.data.pairs import PairData
from vpl.data.schema import Comparison
from vpl.data.split import make_split
from vpl.embed.encoder import DEFAULT_ITEM_DIM
from vpl.embed.projection import fit_if_wider

SHARED_HH = Path(__file__).resolve().parents[3] / "shared" / "data" / "relabeled_hh_rlhf"
"""Where the relabeled HH-RLHF data sits in a checkout (`../shared/data` beside the repo)."""

MODEL_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "btl": ("btl", {}),
    "dpl-meanvar": ("dpl-meanvar", {}),
    "dpl-categorical": ("dpl-categorical", {}),
    "mixture": ("mixture", {}),
    "prototypes": ("prototypes", {}),
    "btl-head": ("btl-head", {}),
    "low-rank": ("low-rank", {}),
    "low-rank-map": ("low-rank", {"inference": "map"}),
    "vpl": ("vpl", {}),
    "vpl-amortized": ("vpl", {"inference": "amortized"}),
    "vpl-attention": ("vpl", {"set_encoder": "attention"}),
    "vpl-concat": ("vpl", {"latent_mode": "concat", "context_nll": 0.0}),
    "vpl-linear": ("vpl", {"layers": 1, "latent_dim": 4}),
    "vpl-mlp": ("vpl", {"layers": 2}),
    "oracle-type": ("oracle-type", {}),
}
"""Bench names -> (registry name, options over the model's defaults). `vpl-concat` is the
paper's formulation (z concatenated to the item, encoder on raw items), kept to show collapse.
`vpl-amortized` infers z with the encoder alone, as the paper does (`vpl` uses the latent bank);
`low-rank-map` infers a new user's weights by MAP under a Gaussian prior (`low-rank`: bank).
`vpl-linear`: linear reward features (the default) with a 4-d latent, the low-rank model's
structure; `vpl-mlp`: reward features with one hidden layer, the default until the encoder
became layer-pooled vectors."""

ON_REQUEST = ("vpl-amortized", "vpl-concat", "vpl-linear", "vpl-mlp")
"""Variants that run only when `--models` names them. `vpl-concat` is among them: it shows the
paper's formulation collapsing (no active latent unit on Personas 2 types in 3 of 3 seeds, on
relabeled HH in 2 of 3, commit ae562f9), which the README's earlier tables record, and costs a
tenth of the full suite's training time."""

ALL_MODELS = tuple(m for m in MODEL_VARIANTS if m not in ON_REQUEST)
"""Every suite's default models."""

MIN_USERS_FOR_CI = 5
"""With fewer users (relabeled HH-RLHF has two), CIs are binomial over pairs instead."""


@dataclass(frozen=True)
class BenchData:
    """A dataset of a suite: a generator (pets, personas) or the relabeled HH-RLHF files."""

    name: str
    kind: str  # "pets" | "personas" | "hh"
    variant: str = ""
    size: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Suite:
    """Datasets x models x seeds, the context sizes scored and training overrides."""

    name: str
    datasets: tuple[BenchData, ...]
    models: tuple[str, ...] = ALL_MODELS
    seeds: int = 3
    ks: tuple[int, ...] = (0, 1, 2, 4, 8, 16)
    train: dict[str, Any] = field(default_factory=dict)


_SMALL = {"users_per_type": 30, "test_users_per_type": 10, "pairs_per_user": 40}
SUITES: dict[str, Suite] = {
    "tiny": Suite(
        "tiny",
        (BenchData("personas-2-tiny", "personas", "2",
                   {"users_per_type": 6, "test_users_per_type": 3, "pairs_per_user": 12}),),
        models=("btl", "vpl", "btl-head", "oracle-type"), seeds=1, ks=(0, 2, 4),
        train={"epochs": 2}),
    "quick": Suite(
        "quick",
        (BenchData("pets-controversial", "pets", "controversial", _SMALL),
         BenchData("personas-4", "personas", "4", _SMALL),
         BenchData("personas-continuous", "personas", "continuous",
                   _SMALL)),
        seeds=1),
    "hh": Suite("hh", (BenchData("hh-relabeled", "hh"),), seeds=1, ks=(0, 4, 8, 16)),
    "full": Suite(
        "full",
        (BenchData("pets-full", "pets", "full"),
         BenchData("pets-controversial", "pets", "controversial"),
         BenchData("personas-2", "personas", "2"),
         BenchData("personas-4", "personas", "4"),
         BenchData("personas-continuous", "personas", "continuous"),
         BenchData("hh-relabeled", "hh")),
        seeds=3),
}


@dataclass
class Prepared:
    """Embedded splits of one dataset, ready for every model."""

    name: str
    train: PairData
    val: PairData
    test: PairData
    test_pool_is_train: bool  # contexts of test pairs come from train (HH) or from test itself


def _pick(data: PairData, records: Sequence[Comparison], keep: Sequence[Comparison]) -> PairData:
    keys = {r.key for r in keep}
    return data.subset(np.array([i for i, r in enumerate(records) if r.key in keys],
                                dtype=np.int64))


def _with_types(data: PairData) -> PairData:
    """Declare each user its own type where the data declares none (HH: one per objective)."""
    if data.user_types is not None and any(t is not None for t in data.user_types):
        return data
    return dataclasses.replace(data, user_types=list(data.users))


def prepare(spec: BenchData, *, seed: int = 0, progress: bool = True,
            hh_path: str | os.PathLike | None = None,
            embed_model: str | None = None,
            item_dim: int | None = DEFAULT_ITEM_DIM) -> Prepared | None:
    """Generate or load, embed and split one dataset (None: HH files are absent).
    `embed_model`: the sentence encoder (default `vpl.embed.DEFAULT_ENCODER`); item vectors
    wider than `item_dim` are projected onto that many principal components of the training
    items (None or 0: never)."""
    from vpl.embed import DEFAULT_ENCODER, embed_comparisons
    from vpl.pipeline import get_encoder

    if spec.kind in ("pets", "personas"):
        if spec.kind == "pets":
            from vpl.data.pets import generate_pets as gen
        else:
            from vpl.data.personas import generate_personas as gen
        train_rows, test_rows = gen(spec.variant, seed=seed, **spec.size)
        train_all, _ = records_from_dataset(train_rows, FieldMap(), name=f"{spec.name}/train")
        test_rec, _ = records_from_dataset(test_rows, FieldMap(), name=f"{spec.name}/test")
        held_apart = test_rec
    elif spec.kind == "hh":
        path = Path(hh_path) if hh_path else SHARED_HH
        if not path.exists():
            return None
        records, _ = load_records([path], FieldMap(user="objective"), on_error="skip")
        split = make_split(records, test_users=0.0, heldout_pairs=0.2, seed=seed)
        train_all, held_apart, _ = split.partition(records)
        test_rec = held_apart
    else:
        raise ValueError(f"unknown bench dataset kind {spec.kind!r}")
    split = make_split(train_all, test_users=0.0, heldout_pairs=0.1, seed=seed)
    train_rec, val_rec, _ = split.partition(train_all)
    encoder = get_encoder(embed_model or DEFAULT_ENCODER, progress=progress)
    # item vectors wider than item_dim: every item array is projected once, with the basis of
    # the training pairs' items, and the splits are picked again from the projected arrays
    if spec.kind == "hh":
        every = train_all + test_rec
        data = _with_types(embed_comparisons(every, encoder))
        proj = fit_if_wider(_pick(data, every, train_rec), item_dim)
        if proj is not None:
            data = proj.apply(data)
        train, val, test = (_pick(data, every, part) for part in (train_rec, val_rec, held_apart))
        return Prepared(spec.name, train, val, test, test_pool_is_train=True)
    data = embed_comparisons(train_all, encoder)
    test = embed_comparisons(test_rec, encoder)
    proj = fit_if_wider(_pick(data, train_all, train_rec), item_dim)
    if proj is not None:
        data, test = proj.apply(data), proj.apply(test)
    train, val = _pick(data, train_all, train_rec), _pick(data, train_all, val_rec)
    return Prepared(spec.name, train, val, test, test_pool_is_train=False)


def run_job(prep: Prepared, model_key: str, seed: int, ks: Sequence[int],
            train_options: dict[str, Any]) -> dict[str, Any]:
    """Train one model with one seed and score it at every K. Runs in a worker process."""
    from vpl.evaluate import evaluate_pairs, latent_diagnostics, posterior_means
    from vpl.models import build_for
    from vpl.train import TrainConfig, fit, seed_everything

    name, options = MODEL_VARIANTS[model_key]
    cfg = TrainConfig(seed=seed, **train_options)
    seed_everything(seed)
    model = build_for(name, prep.train, **options)
    res = fit(model, prep.train, prep.val if len(prep.val) else None, cfg, progress=False)
    pool = prep.train if prep.test_pool_is_train else None
    out: dict[str, Any] = {"dataset": prep.name, "model": model_key, "seed": seed,
                           "train_seconds": res.seconds, "best_epoch": res.best_epoch,
                           "after_fit": res.after_fit, "curve": {}}
    for k in ks:
        s = evaluate_pairs(model, prep.test, pool, context_size=k, seed=seed)
        out["curve"][str(k)] = s.summary()
    k_ref = max((k for k in ks if k <= 8), default=ks[-1])
    out["k_ref"] = k_ref
    diag_pool = prep.train if prep.test_pool_is_train else prep.test
    diag = latent_diagnostics(model, diag_pool, context_size=k_ref, seed=seed)
    if diag:
        out["latent"] = diag
        means, _, owner = posterior_means(model, diag_pool, context_size=k_ref, seed=seed)
        types = diag_pool.user_types or [None] * len(diag_pool.users)
        out["latent_points"] = {"means": means.tolist(),
                                "type": [str(types[u]) for u in owner.tolist()]}
    return out


def _ci(values: Sequence[float]) -> float:
    """Half-width of a 95% t-interval of the mean (0 for fewer than two values)."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if len(v) < 2:
        return 0.0
    from scipy import stats

    return float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


def aggregate(results: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """{dataset: {model: summary}}: means over seeds, CIs over seeds and over users."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for r in results:
        table.setdefault(r["dataset"], {}).setdefault(r["model"], {"runs": []})["runs"].append(r)
    for models in table.values():
        for m, cell in models.items():
            runs = cell["runs"]
            ks = list(runs[0]["curve"])
            cell["curve"] = {}
            for k in ks:
                accs = [r["curve"][k]["accuracy"] for r in runs]
                disj = [r["curve"][k]["accuracy_item_disjoint"] for r in runs]
                users: dict[str, list[float]] = {}
                for r in runs:
                    for u, a in r["curve"][k]["per_user"].items():
                        users.setdefault(u, []).append(a)
                per_user = [float(np.mean(v)) for v in users.values()]
                if len(per_user) >= MIN_USERS_FOR_CI:
                    ci_users = _ci(per_user)
                else:  # too few users for an interval over users: binomial over pairs
                    n = sum(r["curve"][k]["n_pairs"] for r in runs)
                    p = float(np.mean(accs))
                    ci_users = float(1.96 * np.sqrt(p * (1 - p) / max(n, 1)))
                cell["curve"][k] = {
                    "accuracy": float(np.mean(accs)), "ci_seeds": _ci(accs),
                    "ci_users": ci_users,
                    "accuracy_item_disjoint": float(np.nanmean(disj)),
                    "worst_user": float(np.mean([r["curve"][k]["worst_user_accuracy"]
                                                 for r in runs])),
                    "user_std": float(np.mean([r["curve"][k]["user_accuracy_std"] for r in runs])),
                    "nll": float(np.mean([r["curve"][k]["nll"] for r in runs])),
                    "ece": float(np.mean([r["curve"][k]["ece"] for r in runs])),
                }
            cell["k_ref"] = str(runs[0]["k_ref"])
            cell["seeds"] = len(runs)
            cell["train_seconds"] = float(np.mean([r["train_seconds"] for r in runs]))
            if "latent" in runs[0]:
                cell["active_units"] = [r["latent"]["active_units"] for r in runs]
                cell["between_user_std"] = float(np.mean([r["latent"]["between_user_std"]
                                                          for r in runs]))
                cell["within_user_std"] = float(np.mean([r["latent"]["within_user_std"]
                                                         for r in runs]))
            del models[m]["runs"]
    return table


def _fmt(acc: float, ci: float) -> str:
    return f"{acc:.3f}" if ci == 0 else f"{acc:.3f} ± {ci:.3f}"


def render_report(suite: Suite, table: dict[str, dict[str, dict[str, Any]]],
                  seconds: float, commit: str, skipped: Sequence[str],
                  embed_model: str | None = None, item_dim: int | None = None) -> str:
    """The Markdown report: a few-shot table and a detail table per dataset."""
    lines = [f"# vpl bench: suite `{suite.name}`", "",
             f"Commit `{commit}`; {suite.seeds} seed(s); {seconds:.0f} s on "
             f"{os.cpu_count()} CPU core(s). Accuracy on test pairs (unseen users, except "
             "relabeled HH-RLHF: held-out pairs of its two users), each scored with a context "
             "of K other pairs of the same user. ± is a 95% CI over seeds when there are "
             "several, otherwise over users (over pairs where there are fewer than "
             f"{MIN_USERS_FOR_CI} users).", ""]
    if embed_model is not None:
        lines[2] += f" Sentence encoder: `{embed_model}`"
        lines[2] += (f", item vectors wider than {item_dim} projected to {item_dim} principal "
                     "components of the training items." if item_dim else ".")
    for name in skipped:
        lines += [f"*{name}: skipped (data not found).*", ""]
    for ds, models in table.items():
        ks = list(next(iter(models.values()))["curve"])
        lines += [f"## {ds}", "", f"![accuracy vs K]({ds}_few_shot.png)", "",
                  "| model | " + " | ".join(f"K={k}" for k in ks) + " |",
                  "|---|" + "---|" * len(ks)]
        for m, c in models.items():
            cells = []
            for k in ks:
                p = c["curve"][k]
                cells.append(_fmt(p["accuracy"], p["ci_seeds"] if c["seeds"] > 1
                                  else p["ci_users"]))
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        kr = next(iter(models.values()))["k_ref"]
        lines += ["", f"At K={kr}:", "",
                  "| model | accuracy (CI over users) | item-disjoint | worst user | user std "
                  "| NLL | ECE | active latent units | between / within user std | train s |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for m, c in models.items():
            p = c["curve"][kr]
            au = "/".join(str(a) for a in c["active_units"]) if "active_units" in c else "-"
            bw = (f"{c['between_user_std']:.2f} / {c['within_user_std']:.2f}"
                  if "between_user_std" in c else "-")
            lines.append(
                f"| {m} | {_fmt(p['accuracy'], p['ci_users'])} | "
                f"{p['accuracy_item_disjoint']:.3f} | {p['worst_user']:.3f} | "
                f"{p['user_std']:.3f} | {p['nll']:.3f} | {p['ece']:.3f} | {au} | {bw} | "
                f"{c['train_seconds']:.0f} |")
        lines.append("")
    return "\n".join(lines)


def plot_few_shot(dataset: str, models: dict[str, dict[str, Any]], path: Path) -> None:
    """Accuracy vs K, one line per model, shaded 95% CI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    # tab20's dark shades, then its light ones: the default cycle of 10 colours would give the
    # 1st and 11th model the same one
    tab20 = plt.get_cmap("tab20").colors
    colours = list(tab20[0::2]) + list(tab20[1::2])
    ks: list[int] = []
    for i, (m, c) in enumerate(models.items()):
        ks = [int(k) for k in c["curve"]]
        acc = np.array([c["curve"][str(k)]["accuracy"] for k in ks])
        ci = np.array([c["curve"][str(k)]["ci_seeds" if c["seeds"] > 1 else "ci_users"]
                       for k in ks])
        colour = colours[i % len(colours)]
        ax.plot(ks, acc, marker="o", label=m, color=colour)
        ax.fill_between(ks, acc - ci, acc + ci, alpha=0.12, color=colour)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("context size K (labeled pairs of the user)")
    ax.set_ylabel("accuracy on test pairs")
    ax.set_title(dataset)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_latent(title: str, means: np.ndarray, types: Sequence[str], path: Path) -> None:
    """Posterior means projected on their first two principal components."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centered = means - means.mean(0)
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    xy = centered @ vt[:2].T if vt.shape[0] >= 2 else np.c_[centered[:, :1], 0 * centered[:, :1]]
    fig, ax = plt.subplots(figsize=(5, 4.2))
    for t in sorted(set(types)):
        m = np.array([x == t for x in types])
        ax.scatter(xy[m, 0], xy[m, 1], s=10, alpha=0.7, label=t)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title)
    ax.legend(fontsize=7, title="user type")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def git_commit() -> str:
    """Short hash of the checkout this package runs from, `+dirty` with uncommitted changes."""
    import subprocess

    try:
        root = Path(__file__).resolve().parents[2]
        h = subprocess.check_output(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                                    text=True, stderr=subprocess.DEVNULL).strip()
        dirty = subprocess.call(["git", "-C", str(root), "diff", "--quiet", "HEAD"],
                                stderr=subprocess.DEVNULL) != 0
        return h + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_bench(suite: str | Suite, out: str | os.PathLike, *, seeds: int | None = None,
              models: Sequence[str] | None = None, datasets: Sequence[str] | None = None,
              jobs: int = 0, progress: bool = True, hh_path: str | os.PathLike | None = None,
              log: Callable[[str], None] = print,
              embed_model: str | None = None,
              item_dim: int | None = DEFAULT_ITEM_DIM) -> dict[str, Any]:
    """Run a suite and write OUT/report.md, OUT/results.json and the plots; returns the table.

    `models` / `datasets`: subsets of the suite's, by name (default: all of them).
    `jobs`: worker processes (0: one per CPU core, each training with one thread).
    `embed_model`: the sentence encoder of every dataset (default `vpl.embed.DEFAULT_ENCODER`);
    `item_dim`: item vectors wider than this are projected to as many principal components.
    """
    from vpl.embed import DEFAULT_ENCODER

    embed_model = embed_model or DEFAULT_ENCODER
    if isinstance(suite, str):
        if suite not in SUITES:
            raise ValueError(f"unknown bench suite {suite!r}; expected one of {tuple(SUITES)}")
        suite = SUITES[suite]
    if seeds is not None:
        suite = dataclasses.replace(suite, seeds=seeds)
    if models is not None:
        unknown = [m for m in models if m not in MODEL_VARIANTS]
        if unknown:
            raise ValueError(f"unknown bench model(s) {unknown}; expected {ALL_MODELS}")
        suite = dataclasses.replace(suite, models=tuple(models))
    if datasets is not None:
        names = [d.name for d in suite.datasets]
        unknown = [d for d in datasets if d not in names]
        if unknown:
            raise ValueError(f"unknown dataset(s) {unknown} for suite {suite.name!r}; "
                             f"expected some of {names}")
        suite = dataclasses.replace(
            suite, datasets=tuple(d for d in suite.datasets if d.name in set(datasets)))
    commit = git_commit()  # before this run writes its own outputs, which may be tracked
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    prepared, skipped = [], []
    results: list[dict[str, Any]] = []
    bar = tqdm(total=0, desc=f"bench {suite.name}", disable=not progress)

    def prepared_datasets():
        for spec in suite.datasets:
            p = prepare(spec, progress=progress, hh_path=hh_path, embed_model=embed_model,
                        item_dim=item_dim)
            if p is None:
                skipped.append(spec.name)
                log(f"{spec.name}: data not found, skipped")
                continue
            prepared.append(p)
            tasks = [(p, m, s) for m in suite.models for s in range(suite.seeds)
                     if m != "oracle-type" or p.train.user_types is not None]
            bar.total += len(tasks)
            bar.refresh()
            yield tasks

    jobs = jobs or os.cpu_count() or 1
    if jobs == 1:
        for tasks in prepared_datasets():
            for p, m, s in tasks:
                results.append(run_job(p, m, s, suite.ks, suite.train))
                bar.update()
    else:
        import multiprocessing as mp

        # a dataset's jobs start as soon as it is embedded, while the next one is prepared
        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as ex:
            futs = [ex.submit(run_job, p, m, s, suite.ks, suite.train)
                    for tasks in prepared_datasets() for p, m, s in tasks]
            for f in futs:
                results.append(f.result())
                bar.update()
    bar.close()
    order = {m: i for i, m in enumerate(suite.models)}
    results.sort(key=lambda r: (r["dataset"], order[r["model"]], r["seed"]))
    latents = {}  # seed 0's posterior means are plotted; none are saved in results.json
    for r in results:
        pts = r.pop("latent_points", None)
        if pts is not None and r["seed"] == 0:
            latents[(r["dataset"], r["model"])] = pts
    table = aggregate(results)
    ds_order = [p.name for p in prepared]
    table = {d: table[d] for d in ds_order if d in table}
    seconds = time.perf_counter() - t0
    report = render_report(suite, table, seconds, commit, skipped, embed_model, item_dim)
    # numbers first: a failure while plotting must not lose an hour of training
    atomic_write_text(out / "results.json", json.dumps(
        {"suite": suite.name, "commit": commit, "seconds": seconds,
         "embed_model": embed_model, "item_dim": item_dim, "table": table,
         "runs": results}, indent=2))
    atomic_write_text(out / "report.md", report)
    for (ds, model), pts in latents.items():
        plot_latent(f"{ds}: {model} posterior means", np.array(pts["means"]), pts["type"],
                    out / f"{ds}_{model}_latent.png")
    for ds, models_ in table.items():
        plot_few_shot(ds, models_, out / f"{ds}_few_shot.png")
    log(report)
    return table
