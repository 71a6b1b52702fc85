"""Phases of training that belong to a model's fitting algorithm, run by the training loop.

A callback's `on_epoch_start` runs before every epoch (the E-step of EM-trained models) and
`on_fit_end` once the best weights are restored (e.g. filling VPL's latent bank). Which
callbacks a model gets by default comes from a registry keyed by model class, so model
files know nothing of training.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from vpl.data.pairs import PairData
from vpl.models import RewardModel
from vpl.models.low_rank import LowRank
from vpl.models.mixture import Mixture
from vpl.models.recommenders import MatrixFactorizationALS, interactions, one_blas_thread
from vpl.models.vpl import VPL
from vpl.train import refine as vpl_refine
from vpl.train.temper import select_item_effects, select_temperature

if TYPE_CHECKING:
    from vpl.train.loop import TrainConfig

Validate = Callable[[], float]


class Callback(Protocol):
    """Hooks of the training loop."""

    def on_epoch_start(self, model: RewardModel, train: PairData,
                       rng: np.random.Generator) -> None:
        """Before every epoch."""

    def on_fit_end(self, model: RewardModel, train: PairData, cfg: TrainConfig,
                   validate: Validate | None, held_out: PairData | None = None
                   ) -> dict[str, float]:
        """After the best weights are restored; `validate()` scores the model on the loop's
        validation set (None without one); `held_out` holds the pairs of users kept out of
        training for callbacks that choose settings on them (`selects_on_users`). Returns
        facts worth recording."""


class _NoOp:
    def on_epoch_start(self, model: RewardModel, train: PairData,
                       rng: np.random.Generator) -> None:
        return None

    def on_fit_end(self, model: RewardModel, train: PairData, cfg: TrainConfig,
                   validate: Validate | None, held_out: PairData | None = None
                   ) -> dict[str, float]:
        return {}


def _has_pairs(train: PairData, device: torch.device) -> torch.Tensor:
    """(U,) True for the users of `train` that have pairs."""
    seen = torch.zeros(len(train.users), dtype=torch.bool, device=device)
    seen[torch.from_numpy(np.unique(train.user)).to(device)] = True
    return seen


@torch.no_grad()
def mixture_e_step(model: Mixture, train: PairData) -> None:
    """Responsibilities of the training users from all of their pairs, then the pi update
    pi_m = (sum_u gamma_um + a) / (U + M a)."""
    log_resp = model.e_step(train)  # (U, M)
    a = model.config.pi_smoothing
    counts = log_resp[_has_pairs(train, log_resp.device)].exp().sum(0)  # (M,)
    pi = (counts + a) / (counts.sum() + model.config.heads * a)
    model.log_pi.copy_(pi.clamp_min(1e-12).log())
    model.train_log_resp = log_resp


@torch.no_grad()
def low_rank_e_step(model: LowRank, train: PairData) -> None:
    """Every training user's MAP weights, then the population prior (their mean and
    covariance) and the bank from them, so validation during training scores the inference
    used afterwards."""
    w = model.user_weights(train)
    seen = _has_pairs(train, w.device)
    ws = w[seen]
    model.prior_mean.copy_(ws.mean(0))
    if len(ws) > 1:
        model.prior_cov.copy_(torch.cov(ws.T).reshape(model.config.rank, model.config.rank))
    model.train_weights = w
    # seeded, so the bank does not depend on the epoch
    model.bank.fill(ws, seed=0, owners=np.flatnonzero(seen.cpu().numpy()))


class MixtureEM(_NoOp):
    """The E-step of the mixture's EM before every epoch."""

    def on_epoch_start(self, model: RewardModel, train: PairData,
                       rng: np.random.Generator) -> None:
        mixture_e_step(model, train)  # type: ignore[arg-type]


class LowRankEM(_NoOp):
    """The E-step before every epoch, and once more for the restored best basis (so the saved
    prior and bank match the saved basis exactly)."""

    def on_epoch_start(self, model: RewardModel, train: PairData,
                       rng: np.random.Generator) -> None:
        low_rank_e_step(model, train)  # type: ignore[arg-type]

    def on_fit_end(self, model: RewardModel, train: PairData, cfg: TrainConfig,
                   validate: Validate | None, held_out: PairData | None = None
                   ) -> dict[str, float]:
        low_rank_e_step(model, train)  # type: ignore[arg-type]
        return {}


class BankTemperature(_NoOp):
    """After the bank is filled: its likelihood temperature, fixed by the model's config
    (`bank_temperature`) or chosen on held-out training users (`vpl.train.temper`)."""

    @staticmethod
    def _uses_bank(model: RewardModel) -> bool:
        mode = model.inference if isinstance(model, VPL) else model.config.inference
        return mode == "bank"

    @classmethod
    def selects_on_users(cls, model: RewardModel) -> bool:
        """Whether it will choose the temperature on users held out of training."""
        return cls._uses_bank(model) and model.config.bank_temperature is None

    def on_fit_end(self, model: RewardModel, train: PairData, cfg: TrainConfig,
                   validate: Validate | None, held_out: PairData | None = None
                   ) -> dict[str, float]:
        if not self._uses_bank(model) or not len(model.bank):
            return {}
        fixed = model.config.bank_temperature
        if fixed is not None:
            model.bank.temperature.fill_(float(fixed))
            return {}
        return select_temperature(model, model.bank, train, held_out=held_out, seed=cfg.seed)


class ItemEffects(_NoOp):
    """After the bank's temperature: the strength of per-user item effects
    (`vpl.models.effects`), fixed by the model's config (`item_effects`) or chosen on held-out
    training users (`vpl.train.temper`)."""

    @staticmethod
    def selects_on_users(model: RewardModel) -> bool:
        """Whether it will choose the strength on users held out of training."""
        return model.config.item_effects is None and model.config.label_noise == 0

    def on_fit_end(self, model: RewardModel, train: PairData, cfg: TrainConfig,
                   validate: Validate | None, held_out: PairData | None = None
                   ) -> dict[str, float]:
        assert isinstance(model, VPL)
        fixed = 0.0 if model.config.label_noise > 0 else model.config.item_effects
        if fixed is not None:
            model.item_effect.fill_(float(fixed))
            return {}
        bank = model.bank if model.inference == "bank" and len(model.bank) else None
        return select_item_effects(model, model.item_effect, train, bank, held_out=held_out,
                                   seed=cfg.seed)


class MatrixFactorization(_NoOp):
    """After the item scores are trained: ALS item factors of the chosen items (`implicit`)
    and the weight alpha of the factor term, by logistic regression on the training pairs."""

    def on_fit_end(self, model: RewardModel, train: PairData, cfg: TrainConfig,
                   validate: Validate | None, held_out: PairData | None = None
                   ) -> dict[str, float]:
        assert isinstance(model, MatrixFactorizationALS)
        x = torch.from_numpy(train.items)
        idx = model.item_index(x).numpy()  # (N,) vocabulary row of each item
        codes = train.items[:, -model.config.id_dim:]
        if not np.all((codes == 0) | (codes == 1)):
            raise ValueError("mf-als needs one-hot item codes (at most 1,024 recurring items)")
        ch, rj = idx[train.chosen], idx[train.rejected]
        users = np.unique(train.user)
        row = np.searchsorted(users, train.user)
        mat = interactions(row, ch, rj, len(users), model.config.id_dim)
        als = model.als_model()
        with one_blas_thread():
            als.fit(mat, show_progress=False)
        q = np.asarray(als.item_factors, dtype=np.float32)
        p = np.asarray(als.user_factors, dtype=np.float32)[np.searchsorted(users, train.user)]
        qz = np.vstack([q, np.zeros((1, q.shape[1]), np.float32)])
        m = ((qz[ch] - qz[rj]) * p).sum(1)  # (P,) factor term of every training pair
        with torch.no_grad():
            base = (model.reward(x[train.chosen]) - model.reward(x[train.rejected])).numpy()
        model.item_factors = torch.from_numpy(q)
        model.alpha.fill_(_fit_scale(base.astype(np.float64), m.astype(np.float64)))
        return {"mf_alpha": float(model.alpha)}


def _fit_scale(base: np.ndarray, m: np.ndarray, steps: int = 20) -> float:
    """alpha maximizing sum log sigmoid(base + alpha m), by Newton's method (concave)."""
    a = 0.0
    for _ in range(steps):
        t = base + a * m
        sig = 1.0 / (1.0 + np.exp(t))  # sigmoid(-t)
        grad = float((sig * m).sum())
        hess = float((sig * (1 - sig) * m * m).sum()) + 1e-9
        a += grad / hess
    return max(a, 0.0)


class VPLBankRefinement(_NoOp):
    """Fill VPL's latent bank from the training users and, with bank inference, refine the
    decoder (`VPLConfig.refine_epochs`, guarded by `validate` when given)."""

    def on_fit_end(self, model: RewardModel, train: PairData, cfg: TrainConfig,
                   validate: Validate | None, held_out: PairData | None = None
                   ) -> dict[str, float]:
        assert isinstance(model, VPL)
        vpl_refine.fill_bank(model, train, cfg.context_size, cfg.seed)
        if model.inference == "bank" and model.config.refine_epochs > 0:
            return vpl_refine.refine(model, train, model.config.refine_epochs, cfg.seed,
                                     validate=validate)
        return {}


CALLBACKS: dict[type[RewardModel], Callable[[], list[Callback]]] = {
    Mixture: lambda: [MixtureEM()],
    LowRank: lambda: [LowRankEM(), BankTemperature()],
    VPL: lambda: [VPLBankRefinement(), BankTemperature(), ItemEffects()],
    MatrixFactorizationALS: lambda: [MatrixFactorization()],
}


def callbacks_for(model: RewardModel) -> list[Callback]:
    """The default training phases of a model (by its class or a base class); none for most."""
    for cls in type(model).__mro__:
        if cls in CALLBACKS:
            return CALLBACKS[cls]()
    return []
