"""Reward models, all trained by one loop and chosen by name from a registry."""

from vpl.models import btl, vpl  # noqa: F401  (registers the models)
from vpl.models.base import REGISTRY, LossOutput, Posterior, RewardModel, build, register

__all__ = ["REGISTRY", "LossOutput", "Posterior", "RewardModel", "build", "register"]
