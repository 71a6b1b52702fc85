"""Reward models, all trained by one loop and chosen by name from a registry."""

# importing each module registers its models
from vpl.models import (  # noqa: F401
    btl,
    btl_head,
    dpl,
    low_rank,
    mixture,
    oracle,
    prototypes,
    recommenders,
    vpl,
)
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
