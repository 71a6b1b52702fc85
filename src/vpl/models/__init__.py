"""Reward models, all trained by one loop and chosen by name from a registry."""

# importing each module registers its models
from vpl.models import btl, btl_head, dpl, mixture, oracle, prototypes, vpl  # noqa: F401
from vpl.models.base import (
    REGISTRY,
    LossOutput,
    Posterior,
    RewardModel,
    build,
    build_for,
    register,
)

__all__ = ["REGISTRY", "LossOutput", "Posterior", "RewardModel", "build", "build_for", "register"]
