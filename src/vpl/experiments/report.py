"""Reports of experiments: aggregated tables with CIs, Markdown, plots, the measured commit."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vpl.experiments.suites import MIN_USERS_FOR_CI, Suite
from vpl.stats import binomial_halfwidth, t_halfwidth


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
                    ci_users = t_halfwidth(per_user)
                else:  # too few users for an interval over users: binomial over pairs
                    n = sum(r["curve"][k]["n_pairs"] for r in runs)
                    p = float(np.mean(accs))
                    ci_users = binomial_halfwidth(p, n)
                cell["curve"][k] = {
                    "accuracy": float(np.mean(accs)), "ci_seeds": t_halfwidth(accs),
                    "ci_users": ci_users,
                    "accuracy_item_disjoint": float(np.nanmean(disj)),
                    "ci_seeds_item_disjoint": t_halfwidth([d for d in disj if d == d]),
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


def _k_table(models: dict[str, dict[str, Any]], ks: list[str], key: str, ci_key: str
             ) -> list[str]:
    """Markdown rows: one per model, its `key` accuracy at every K (CI over seeds if several,
    else `ci_key`)."""
    lines = ["| model | " + " | ".join(f"K={k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for m, c in models.items():
        cells = []
        for k in ks:
            p = c["curve"][k]
            ci = p.get(ci_key, 0.0) if c["seeds"] == 1 else p.get(
                "ci_seeds" if key == "accuracy" else "ci_seeds_item_disjoint", 0.0)
            cells.append(_fmt(p[key], ci))
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def _ceiling_line(c: dict[str, Any]) -> str:
    return (f"Crowd agreement: on the {c['coverage']:.0%} of test pairs that other raters "
            f"judged too, a rater agrees with the majority of the others on that very pair "
            f"{c['agreement']:.3f} of the time (ties count one half; {c['n_pairs']} pairs). "
            "That is the accuracy of answering each pair with the crowd's vote on it: a "
            "model that pools the crowd over items can beat it, one that knows the rater "
            "more so.")


def render_report(suite: Suite, table: dict[str, dict[str, dict[str, Any]]],
                  seconds: float, commit: str, skipped: Sequence[str],
                  embed_model: str | None = None, item_dim: int | None = None,
                  ceilings: dict[str, dict[str, Any]] | None = None,
                  failed: Sequence[str] = ()) -> str:
    """The Markdown report: few-shot tables (all pairs, item-disjoint pairs), the crowd
    ceiling where items recur, and a detail table per dataset; jobs that failed are listed
    first."""
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
    if suite.train:
        lines[2] += (" Training options over the defaults, for every model: "
                     + ", ".join(f"`{k}={v}`" for k, v in suite.train.items()) + ".")
    for name in skipped:
        lines += [f"*{name}: skipped (data not found).*", ""]
    for line in failed:
        lines += [f"**Failed job** (not in the tables): {line}", ""]
    for ds, models in table.items():
        ks = list(next(iter(models.values()))["curve"])
        lines += [f"## {ds}", "", f"![accuracy vs K]({ds}_few_shot.png)", "", "All pairs:", ""]
        lines += _k_table(models, ks, "accuracy", "ci_users")
        lines += ["", "Pairs that share no item with the user's context:", ""]
        lines += _k_table(models, ks, "accuracy_item_disjoint", "")
        if ceilings and ds in ceilings:
            lines += ["", _ceiling_line(ceilings[ds])]
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
    plt = pyplot()
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
    plt = pyplot()
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
    """Short hash of the git checkout this package runs from, `+dirty` with uncommitted
    changes; `unknown` for an installed package outside a checkout."""
    import subprocess

    try:
        root = Path(__file__).resolve().parent
        h = subprocess.check_output(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                                    text=True, stderr=subprocess.DEVNULL).strip()
        dirty = subprocess.call(["git", "-C", str(root), "diff", "--quiet", "HEAD"],
                                stderr=subprocess.DEVNULL) != 0
        return h + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
