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
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from vpl.data.io import atomic_write_text
from vpl.embed.encoder import DEFAULT_ITEM_DIM
from vpl.experiments.ceiling import crowd_agreement
from vpl.experiments.prepare import Prepared, prepare
from vpl.experiments.report import aggregate, git_commit, plot_few_shot, plot_latent, render_report
from vpl.experiments.suites import ALL_MODELS, MODEL_VARIANTS, SUITES, Suite

ID_ONLY = ("item-bt", "mf-als")
"""Models that read only item identity codes: they run where items recur, on item vectors with
codes appended whatever the suite's `identity` setting."""


class JobsFailed(RuntimeError):
    """Some jobs of a suite failed; the report of the others was written."""


def run_job(prep: Prepared, model_key: str, seed: int, ks: Sequence[int],
            train_options: dict[str, Any]) -> dict[str, Any]:
    """Train one model with one seed and score it at every K. Runs in a worker process."""
    from vpl.evaluate import evaluate_pairs, latent_diagnostics, posterior_means
    from vpl.models import build_for
    from vpl.train import TrainConfig, fit, seed_everything

    name, options = MODEL_VARIANTS[model_key]
    if name in ID_ONLY:
        prep = prep.with_identity()
    cfg = TrainConfig(seed=seed, **train_options)
    seed_everything(seed)
    model = build_for(name, prep.train, **options)
    res = fit(model, prep.train, prep.val if len(prep.val) else None, cfg, progress=False)
    pool = prep.train if prep.test_pool_is_train else None
    out: dict[str, Any] = {"dataset": prep.name, "model": model_key, "seed": seed,
                           "train_seconds": res.seconds, "best_epoch": res.best_epoch,
                           "val_accuracy": (None if np.isnan(res.best_val_accuracy)
                                            else res.best_val_accuracy),
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


def select(suite: str | Suite, *, seeds: int | None = None, models: Sequence[str] | None = None,
           datasets: Sequence[str] | None = None, train: Mapping[str, Any] | None = None
           ) -> Suite:
    """A suite by name, restricted to the given models and datasets (by name) and seeds, with
    `train` options (`TrainConfig` fields; not `seed`, which the jobs set) over its own."""
    from vpl.train import TrainConfig

    if isinstance(suite, str):
        if suite not in SUITES:
            raise ValueError(f"unknown bench suite {suite!r}; expected one of {tuple(SUITES)}")
        suite = SUITES[suite]
    if train:
        known = {f.name for f in dataclasses.fields(TrainConfig)} - {"seed"}
        unknown = sorted(set(train) - known)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; expected some of "
                             f"{sorted(known)}")
        suite = dataclasses.replace(suite, train={**suite.train, **train})
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
    return suite


def _runs_on(model_key: str, prep: Prepared) -> bool:
    """Whether a model applies to a dataset: the oracle needs declared user types, the
    recommender baselines items that recur (identity codes)."""
    name = MODEL_VARIANTS[model_key][0]
    if name == "oracle-type":
        types = prep.train.user_types
        return types is not None and any(t is not None for t in types)
    if name in ID_ONLY:
        return prep.identity is not None
    return True


def _run_jobs(suite: Suite, datasets: Iterator[Prepared], jobs: int, bar: tqdm
              ) -> tuple[list[dict[str, Any]], list[str]]:
    """Every (model, seed) job of every dataset; a dataset's jobs start as soon as it is
    prepared, while the next one is (`jobs` > 1: worker processes). Returns the results and
    a line for each job that failed (the others still count)."""
    def tasks():
        for p in datasets:
            todo = [(p, m, s) for m in suite.models for s in range(suite.seeds)
                    if _runs_on(m, p)]
            bar.total += len(todo)
            bar.refresh()
            yield from todo

    results: list[dict[str, Any]] = []
    failed: list[str] = []

    def record(task: tuple[Prepared, str, int], result: Callable[[], dict[str, Any]]) -> None:
        try:
            results.append(result())
        except Exception as e:  # one failed job must not lose the others
            failed.append(f"{task[0].name} / {task[1]} / seed {task[2]}: "
                          f"{type(e).__name__}: {e}")
        bar.update()

    if jobs == 1:
        for t in tasks():
            record(t, lambda t=t: run_job(*t, suite.ks, suite.train))
        return results, failed
    import multiprocessing as mp

    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as ex:
        futs = [(t, ex.submit(run_job, *t, suite.ks, suite.train)) for t in tasks()]
        for t, f in futs:
            record(t, f.result)
    return results, failed


def _write(out: Path, suite: Suite, results: list[dict[str, Any]], order: list[str],
           meta: dict[str, Any], skipped: Sequence[str]) -> tuple[dict[str, Any], str]:
    """results.json and report.md first (a failure while plotting loses no numbers), then the
    plots; returns the table and the report."""
    rank = {m: i for i, m in enumerate(suite.models)}
    results.sort(key=lambda r: (r["dataset"], rank[r["model"]], r["seed"]))
    latents = {}  # seed 0's posterior means are plotted; none are saved in results.json
    for r in results:
        pts = r.pop("latent_points", None)
        if pts is not None and r["seed"] == 0:
            latents[(r["dataset"], r["model"])] = pts
    table = aggregate(results)
    table = {d: table[d] for d in order if d in table}
    report = render_report(suite, table, meta["seconds"], meta["commit"], skipped,
                           meta["embed_model"], meta["item_dim"], meta.get("ceilings"),
                           meta.get("failed", ()))
    atomic_write_text(out / "results.json", json.dumps(
        {"suite": suite.name, **meta, "table": table, "runs": results}, indent=2))
    atomic_write_text(out / "report.md", report)
    for (ds, model), pts in latents.items():
        plot_latent(f"{ds}: {model} posterior means", np.array(pts["means"]), pts["type"],
                    out / f"{ds}_{model}_latent.png")
    for ds, models_ in table.items():
        plot_few_shot(ds, models_, out / f"{ds}_few_shot.png")
    return table, report


def run_bench(suite: str | Suite, out: str | os.PathLike, *, seeds: int | None = None,
              models: Sequence[str] | None = None, datasets: Sequence[str] | None = None,
              train: Mapping[str, Any] | None = None, jobs: int = 0, progress: bool = True,
              hh_path: str | os.PathLike | None = None,
              log: Callable[[str], None] = print, embed_model: str | None = None,
              item_dim: int | None = DEFAULT_ITEM_DIM, identity: str = "off") -> dict[str, Any]:
    """Run a suite and write OUT/report.md, OUT/results.json and the plots; returns the table.

    `models` / `datasets`: subsets of the suite's, by name (default: all of them).
    `train`: training options over the suite's (`TrainConfig` fields), for every model.
    `jobs`: worker processes (0: one per CPU core, each training with one thread).
    `hh_path`: the relabeled HH-RLHF folder (default `$VPL_DATA_DIR/relabeled_hh_rlhf`).
    `embed_model`: the sentence encoder of every dataset (default `vpl.embed.DEFAULT_ENCODER`);
    `item_dim`: item vectors wider than this are projected to as many principal components;
    `identity`: `auto` appends item identity codes where items recur (`off`, default: never).
    """
    from vpl.embed import DEFAULT_ENCODER

    embed_model = embed_model or DEFAULT_ENCODER
    suite = select(suite, seeds=seeds, models=models, datasets=datasets, train=train)
    commit = git_commit()  # before this run writes its own outputs, which may be tracked
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    order: list[str] = []
    skipped: list[str] = []
    ceilings: dict[str, dict[str, Any]] = {}
    bar = tqdm(total=0, desc=f"bench {suite.name}", disable=not progress)

    def prepared() -> Iterator[Prepared]:
        for spec in suite.datasets:
            p = prepare(spec, progress=progress, hh_path=hh_path, embed_model=embed_model,
                        item_dim=item_dim, identity=identity)
            if p is None:
                skipped.append(spec.name)
                log(f"{spec.name}: data not found, skipped")
                continue
            order.append(p.name)
            if p.identity is not None and not p.test_pool_is_train:  # items recur
                ceilings[p.name] = crowd_agreement(p.test, [p.train, p.val])
            yield p

    results, failed = _run_jobs(suite, prepared(), jobs or os.cpu_count() or 1, bar)
    bar.close()
    meta = {"commit": commit, "seconds": time.perf_counter() - t0, "embed_model": embed_model,
            "item_dim": item_dim, "identity": identity, "train": suite.train,
            "ceilings": ceilings, "failed": failed}
    table, report = _write(out, suite, results, order, meta, skipped)
    log(report)
    if failed:
        raise JobsFailed(f"{len(failed)} bench job(s) failed (the others are in "
                           f"{out / 'report.md'}):\n" + "\n".join(failed))
    return table
