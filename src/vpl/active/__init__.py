"""Active query selection for new users: posterior uncertainty, acquisition functions (random,
information gain about z, expected predictive information gain, the VPL paper's variance
criterion) and a sequential query loop."""

from vpl.active.acquisition import (
    STRATEGIES,
    CandidatePool,
    Predictive,
    binary_entropy,
    candidate_logits,
    info_gain,
    latent_particles,
    posterior_entropy,
    posterior_variance,
    predictive,
    reward_matrix,
    select_queries,
)
from vpl.active.session import (
    ActiveResult,
    ActiveSession,
    entropy_accuracy_correlation,
    mean_ci,
    queries_to_reach,
    run_active,
    shared_pool,
    split_user_pairs,
    time_selection,
)

__all__ = [
    "STRATEGIES", "ActiveResult", "ActiveSession", "CandidatePool", "Predictive",
    "binary_entropy", "candidate_logits", "entropy_accuracy_correlation",
    "info_gain", "latent_particles", "mean_ci", "posterior_entropy", "posterior_variance",
    "predictive", "queries_to_reach", "reward_matrix", "run_active",
    "select_queries", "shared_pool", "split_user_pairs", "time_selection",
]
