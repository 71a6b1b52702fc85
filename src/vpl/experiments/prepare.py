"""Data for every experiment: load or generate, embed, split by user, project item vectors.

`load_pairs` embeds comparison files (with a run's encoder and projection when given one);
`open_store_for_run` reads a memory-mapped store for a run's model; `run_users` picks the
run's unseen users out of either;
`embed_parts` embeds record blocks and picks named splits out of them with one projection fitted
on the training split; `prepare` does all of it for a benchmark dataset.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vpl.data.io import FieldMap, load_records, records_from_dataset
from vpl.data.pairs import PairData
from vpl.data.schema import Comparison
from vpl.data.split import Split, make_split
from vpl.embed import DEFAULT_ENCODER, DEFAULT_ITEM_DIM, embed_comparisons
from vpl.embed.encoder import TextEncoder
from vpl.embed.encoders import make_encoder
from vpl.embed.identity import IDENTITY, ItemIdentity, fit_identity
from vpl.embed.projection import PROJECTION, Projection, fit_if_wider
from vpl.experiments.suites import BenchData

DATA_DIR_ENV = "VPL_DATA_DIR"
"""Environment variable naming the folder of real data sets (e.g. `../shared/data`)."""

_ENCODERS: dict[str, TextEncoder] = {}
log = logging.getLogger(__name__)


def get_encoder(model: str = DEFAULT_ENCODER, *, progress: bool = True) -> TextEncoder:
    """A shared, lazily loaded text encoder per model name (with the disk cache;
    `vpl.embed.encoders.make_encoder` reads the name)."""
    if model not in _ENCODERS:
        _ENCODERS[model] = make_encoder(model, progress=progress)
    return _ENCODERS[model]


def data_dir(path: str | os.PathLike | None = None) -> Path | None:
    """The real-data folder: `path`, else `$VPL_DATA_DIR`, else None."""
    path = path or os.environ.get(DATA_DIR_ENV)
    return Path(path) if path else None


def read_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The `run.json` of a run directory."""
    path = Path(run_dir) / "run.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: not a vpl run directory (no run.json)")
    return json.loads(path.read_text(encoding="utf-8"))


def load_pairs(path: str | os.PathLike | Sequence[str | os.PathLike],
               run_dir: str | os.PathLike | None = None, *, fields: FieldMap | None = None,
               on_error: str = "abort", embed_model: str | None = None,
               progress: bool = True) -> PairData:
    """Load comparisons from files and embed them; with `run_dir`, with the run's encoder and
    item projection, so the vectors are the ones its model was trained on."""
    run = read_run(run_dir) if run_dir is not None else {}
    if fields is None and "fields" in run:
        fields = FieldMap(**run["fields"])
    records, _ = load_records(path, fields, on_error=on_error)
    # runs from before the default encoder changed record theirs, so `run.get` finds it
    encoder = get_encoder(embed_model or run.get("embed_model", DEFAULT_ENCODER),
                          progress=progress)
    data = embed_comparisons(records, encoder)
    return data if run_dir is None else _for_run(data, run_dir)


def _for_run(data: PairData, run_dir: str | os.PathLike) -> PairData:
    """`data` as the run's model reads items: through its projection and identity codes."""
    if (Path(run_dir) / PROJECTION).exists():
        data = Projection.load(Path(run_dir) / PROJECTION).apply(data)
    if (Path(run_dir) / IDENTITY).exists():
        data = ItemIdentity.load(Path(run_dir) / IDENTITY).apply(data)
    return data


def open_store_for_run(store: str | os.PathLike, run_dir: str | os.PathLike) -> PairData:
    """The comparisons of a memory-mapped store (`vpl.data.store`) for a run's model: the item
    vectors stay on disk unless the run projects them (runs trained on a store do not). A
    store embedded by another encoder than the run's is named in a warning (a quantized twin
    of the run's encoder is a legitimate choice); vectors of another size are an error."""
    from vpl.data.store import open_store, store_info

    run = read_run(run_dir)
    want = run.get("embed_model", DEFAULT_ENCODER)
    have = store_info(store).get("embed_model", "")
    if have != want:
        log.warning("%s: vectors of %r, but the run in %s was trained on %r vectors", store,
                    have, run_dir, want)
    return _for_run(open_store(store), run_dir)


def check_item_dim(data: PairData, input_dim: int, source: object, run_dir: object) -> None:
    """A clear error when `data`'s item vectors are not the size the run's model reads."""
    if data.dim != input_dim:
        raise ValueError(f"{source}: item vectors have {data.dim} dims but the model in "
                         f"{run_dir} expects {input_dim}")


def unseen_users(data: PairData, run_dir: str | os.PathLike) -> np.ndarray | None:
    """User indices of `data` that are unseen users of the run (its split.json), possibly
    none; None when the run records no split."""
    path = Path(run_dir) / "split.json"
    if not path.exists():
        return None
    names = set(json.loads(path.read_text(encoding="utf-8")).get("test_users", []))
    return np.array([i for i, u in enumerate(data.users) if u in names], dtype=np.int64)


def run_users(data: PairData, run_dir: str | os.PathLike, which: str = "unseen") -> PairData:
    """The pairs of `data` of the run's unseen users (`which='unseen'`) or all of them
    (`'all'`). A run without a split, or none of its unseen users here, is an error."""
    if which == "all":
        return data
    if which != "unseen":
        raise ValueError(f"unknown users {which!r} (all, unseen)")
    unseen = unseen_users(data, run_dir)
    if unseen is None:
        raise FileNotFoundError(f"{Path(run_dir) / 'split.json'}: the run records no split, "
                                "so no unseen users")
    rows = np.flatnonzero(np.isin(data.user, unseen))
    if not len(rows):
        raise ValueError(f"none of the unseen users of {run_dir} has pairs here")
    return data.subset(rows)


def pick(data: PairData, records: Sequence[Comparison], keep: Sequence[Comparison]) -> PairData:
    """The pairs of `data` (embedded from `records`, in order) whose records are in `keep`."""
    keys = {r.key for r in keep}
    return data.subset(np.array([i for i, r in enumerate(records) if r.key in keys],
                                dtype=np.int64))


def split_pairs(records: list[Comparison], data: PairData, split: Split
                ) -> tuple[PairData, PairData, PairData]:
    """(train, held-out pairs of seen users, unseen users' pairs) as views of `data`."""
    train, val, test = split.partition(records)
    return pick(data, records, train), pick(data, records, val), pick(data, records, test)


@dataclass
class Embedded:
    """Named splits, the embedded blocks they were picked from, and the fitted transforms."""

    parts: dict[str, PairData]
    blocks: list[PairData]
    projection: Projection | None
    identity: ItemIdentity | None


def embed_parts(blocks: Sequence[Sequence[Comparison]],
                parts: Mapping[str, tuple[int, Sequence[Comparison]]], encoder: TextEncoder,
                item_dim: int | None, *, fit_part: str = "train", identity: str = "off"
                ) -> Embedded:
    """Embed each block of records once and pick each named part (block index, its records)
    out of its block. Fitted on `fit_part` alone: item vectors wider than `item_dim` are
    projected onto that many principal components of its items (None or 0: never); with
    `identity` `auto`, item identity codes are appended where its items recur across users
    (`vpl.embed.identity.fit_identity`; `off`, the default: never)."""
    if identity not in ("auto", "off"):
        raise ValueError(f"identity must be 'auto' or 'off', got {identity!r}")
    datas = [embed_comparisons(list(b), encoder) for b in blocks]
    block, recs = parts[fit_part]
    proj = fit_if_wider(pick(datas[block], blocks[block], recs), item_dim)
    if proj is not None:
        datas = [proj.apply(d) for d in datas]
    ident = fit_identity(pick(datas[block], blocks[block], recs)) if identity == "auto" else None
    if ident is not None:
        datas = [ident.apply(d) for d in datas]
    out = {name: pick(datas[b], blocks[b], recs) for name, (b, recs) in parts.items()}
    return Embedded(out, datas, proj, ident)


@dataclass
class Prepared:
    """Embedded splits of one dataset, ready for every model."""

    name: str
    train: PairData
    val: PairData
    test: PairData
    test_pool_is_train: bool  # contexts of test pairs come from train (HH) or from test itself
    identity: ItemIdentity | None = None
    """Identity codes fitted on the training pairs where items recur (whether or not the item
    vectors carry them): the recommender baselines read only these."""

    def with_identity(self) -> Prepared:
        """The same splits with identity codes appended to the item vectors (itself when the
        vectors carry them already, or its items do not recur)."""
        if self.identity is None or self.train.id_dim:
            return self
        return dataclasses.replace(self, train=self.identity.apply(self.train),
                                   val=self.identity.apply(self.val),
                                   test=self.identity.apply(self.test))


def _with_types(data: PairData) -> PairData:
    """Declare each user its own type where the data declares none (HH: one per objective)."""
    if data.user_types is not None and any(t is not None for t in data.user_types):
        return data
    return dataclasses.replace(data, user_types=list(data.users))


def _hh_records(path: Path, seed: int) -> tuple[list[Comparison], list[Comparison]]:
    """Relabeled HH-RLHF: (training pairs, held-out pairs of the same two users)."""
    records, _ = load_records([path], FieldMap(user="objective"), on_error="skip")
    split = make_split(records, test_users=0.0, heldout_pairs=0.2, seed=seed)
    train_all, held_apart, _ = split.partition(records)
    return train_all, held_apart


def generated_records(spec: BenchData, seed: int) -> tuple[list[Comparison], list[Comparison]]:
    """Pets or Personas: (training file, test file of unseen users) as records."""
    if spec.kind == "pets":
        from vpl.data.pets import generate_pets as gen
    else:
        from vpl.data.personas import generate_personas as gen
    train_rows, test_rows = gen(spec.variant, seed=seed, **spec.size)
    train_all, _ = records_from_dataset(train_rows, FieldMap(), name=f"{spec.name}/train")
    test_rec, _ = records_from_dataset(test_rows, FieldMap(), name=f"{spec.name}/test")
    return train_all, test_rec


def _cap_users(records: list[Comparison], size: Mapping[str, int], rng: np.random.Generator
               ) -> list[Comparison]:
    """Users with at least `min_pairs_per_user` pairs, at most `max_pairs_per_user` of them
    each (drawn at random), at most `max_users` users (drawn at random; 0: all)."""
    by_user: dict[str, list[Comparison]] = {}
    for r in records:
        by_user.setdefault(r.user_id, []).append(r)
    lo, hi = size.get("min_pairs_per_user", 1), size.get("max_pairs_per_user", 0)
    users = sorted(u for u, rs in by_user.items() if len(rs) >= lo)
    if size.get("max_users", 0) and len(users) > size["max_users"]:
        users = sorted(rng.choice(users, size=size["max_users"], replace=False).tolist())
    out: list[Comparison] = []
    for u in users:
        rs = by_user[u]
        if hi and len(rs) > hi:
            rs = [rs[i] for i in sorted(rng.choice(len(rs), size=hi, replace=False))]
        out.extend(rs)
    return out


def _real_records(spec: BenchData, root: Path, seed: int
                  ) -> tuple[list[Comparison], list[Comparison]] | None:
    """Real per-user data: (training users' records, unseen test users' records), or None
    when the files are absent."""
    from vpl.data.ratings import RatingsConfig, load_ratings, ratings_to_comparisons, split_users

    path = root / spec.source
    if not path.exists() or (spec.items and not (root / spec.items).exists()):
        return None
    rng = np.random.default_rng(seed)
    if spec.kind == "ratings":
        cfg = RatingsConfig(**spec.options, seed=seed,
                            min_pairs_per_user=spec.size.get("min_pairs_per_user", 1),
                            max_pairs_per_user=spec.size.get("max_pairs_per_user", 0))
        records = ratings_to_comparisons(load_ratings(path, root / spec.items, cfg), cfg)
    else:
        records, _ = load_records([path], FieldMap(), on_error="skip")
    records = _cap_users(records, spec.size, rng)
    return split_users(records, 0.2, seed)


def prepare(spec: BenchData, *, seed: int = 0, progress: bool = True,
            hh_path: str | os.PathLike | None = None, embed_model: str | None = None,
            item_dim: int | None = DEFAULT_ITEM_DIM, identity: str = "off"
            ) -> Prepared | None:
    """Generate or load, embed and split one dataset (None: its files are absent).
    `hh_path`: the relabeled HH-RLHF folder (default `$VPL_DATA_DIR/relabeled_hh_rlhf`)."""
    if spec.kind in ("pets", "personas"):
        train_all, test_rec = generated_records(spec, seed)
    elif spec.kind in ("comparisons", "ratings"):
        root = data_dir()
        found = _real_records(spec, root, seed) if root is not None else None
        if found is None:
            return None
        train_all, test_rec = found
    elif spec.kind == "hh":
        root = data_dir()
        path = Path(hh_path) if hh_path else (root / "relabeled_hh_rlhf" if root else None)
        if path is None or not path.exists():
            return None
        train_all, test_rec = _hh_records(path, seed)
    else:
        raise ValueError(f"unknown bench dataset kind {spec.kind!r}")
    split = make_split(train_all, test_users=0.0, heldout_pairs=0.1, seed=seed)
    train_rec, val_rec, _ = split.partition(train_all)
    encoder = get_encoder(embed_model or DEFAULT_ENCODER, progress=progress)
    if spec.kind == "hh":  # one block: the held-out pairs are of the training users
        every = train_all + test_rec
        parts = {"train": (0, train_rec), "val": (0, val_rec), "test": (0, test_rec)}
        emb = embed_parts([every], parts, encoder, item_dim, identity=identity)
        p = {k: _with_types(v) for k, v in emb.parts.items()}
    else:
        parts = {"train": (0, train_rec), "val": (0, val_rec), "test": (1, test_rec)}
        emb = embed_parts([train_all, test_rec], parts, encoder, item_dim, identity=identity)
        p = emb.parts
    ident = emb.identity if emb.identity is not None else fit_identity(p["train"])
    return Prepared(spec.name, p["train"], p["val"], p["test"],
                    test_pool_is_train=spec.kind == "hh", identity=ident)
