"""The personalized reward for TRL: its signature, per-user scores, and two GRPO steps of a
tiny random policy on CPU."""

from __future__ import annotations

import inspect
import json

import pytest

from vpl.data.io import load_records
from vpl.integrations.trl import PersonalizedReward


def _users(pets, n: int = 9) -> dict[str, list[dict]]:
    """The first `n` test comparisons of one test user of each Pets type."""
    records, _ = load_records(pets / "test.jsonl")
    out: dict[str, list[dict]] = {}
    for r in records:
        t = r.meta["user_type"]
        if t not in out or (len(out[t]) < n and out[t][0]["user"] == r.user_id):
            out.setdefault(t, []).append({"user": r.user_id, "prompt": r.prompt,
                                          "chosen": r.chosen, "rejected": r.rejected})
    return out


@pytest.fixture(scope="module")
def users(pets):
    return _users(pets)


def test_signature_and_return_type(run_dir, users):
    reward = PersonalizedReward(run_dir)
    params = inspect.signature(reward.__call__).parameters
    assert list(params)[:2] == ["prompts", "completions"]
    assert params["kwargs"].kind is inspect.Parameter.VAR_KEYWORD
    out = reward(["q", "q"], ["one answer", "another answer"], completion_ids=[[1], [2]])
    assert isinstance(out, list) and len(out) == 2 and all(isinstance(x, float) for x in out)
    conversational = reward([[{"role": "user", "content": "q"}]],
                            [[{"role": "assistant", "content": "one answer"}]])
    assert conversational == pytest.approx(out[:1], abs=1e-5)  # same texts, same reward
    assert reward.__name__ == "vpl_reward"


def test_each_sample_is_scored_for_its_own_user(run_dir, users, tmp_path):
    kinds = sorted(users)
    assert len(kinds) == 2
    held = {k: v[0] for k, v in users.items()}  # scored, not part of the context
    contexts = {k: v[1:] for k, v in users.items()}
    reward = PersonalizedReward(run_dir, contexts=contexts, user_column="user")
    prompts, completions, who = [], [], []
    for k in kinds:
        for h in kinds:  # every user scores both held-out pairs
            c = held[h]
            prompts += [c["prompt"]] * 2
            completions += [c["chosen"], c["rejected"]]
            who += [k, k]
    r = reward(prompts, completions, user=who)
    own = {k: i for i, k in enumerate(kinds)}
    for k in kinds:  # a user's own held-out choice is ranked first for that user
        base = 4 * own[k] + 2 * own[k]  # user k's block, then its own pair within it
        assert r[base] > r[base + 1]
    # a context file gives the same rewards as the same comparisons in memory
    path = tmp_path / "ctx.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in contexts[kinds[0]]))
    from_file = PersonalizedReward(run_dir, context=path, scorer=reward.scorer)
    assert from_file(prompts[:4], completions[:4]) == pytest.approx(r[:4], abs=1e-5)
    with pytest.raises(ValueError, match="prompts but"):
        reward(["a"], ["b", "c"])


def test_two_grpo_steps_of_a_tiny_policy(run_dir, tiny_lm, users, tmp_path):
    trl = pytest.importorskip("trl", reason="TRL is an optional extra (vpl-rlhf[trl])")
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_lm)
    policy = AutoModelForCausalLM.from_pretrained(tiny_lm)
    before = {k: v.detach().clone() for k, v in policy.named_parameters()}
    kinds = sorted(users)
    data = Dataset.from_dict({"prompt": ["the ferret", "a small cat", "the dog", "a toy"],
                              "user": [kinds[0], kinds[1], kinds[0], kinds[1]]})
    reward = PersonalizedReward(run_dir, contexts={k: v for k, v in users.items()},
                                user_column="user")
    args = trl.GRPOConfig(output_dir=str(tmp_path / "grpo"), per_device_train_batch_size=2,
                          num_generations=2, max_completion_length=6, max_steps=2,
                          learning_rate=1e-2, logging_steps=1, save_strategy="no",
                          report_to="none", use_cpu=True, bf16=False, seed=0)
    trainer = trl.GRPOTrainer(model=policy, reward_funcs=[reward], args=args,
                              train_dataset=data, processing_class=tok)
    trainer.train()
    assert trainer.state.global_step == 2
    logged = [h for h in trainer.state.log_history if "rewards/vpl_reward/mean" in h]
    assert logged, trainer.state.log_history
    moved = [k for k, v in policy.named_parameters() if not torch.equal(v, before[k])]
    assert moved  # the policy was updated from the personalized rewards
