"""Personalized best-of-N: sampling from a tiny causal LM, ranking by the user's reward, and
`vpl generate` end to end."""

from __future__ import annotations

import json

import numpy as np

from vpl.cli import main
from vpl.data.io import load_records
from vpl.generation import Generator, rank
from vpl.serve.scorer import RunScorer


def test_sampling_is_seeded_and_gives_n_responses(tiny_lm):
    gen = Generator(f"causal:{tiny_lm}")
    a = gen.sample("the ferret", 4, max_new_tokens=5, seed=1)
    assert len(a) == 4 and a == gen.sample("the ferret", 4, max_new_tokens=5, seed=1)


def test_rank_returns_the_candidates_by_the_users_reward(run_dir, pets):
    scorer = RunScorer(run_dir)
    records, _ = load_records(pets / "test.jsonl")
    uid = records[0].user_id
    mine = [r for r in records if r.user_id == uid]
    belief = scorer.belief("u", 8, *[[getattr(r, f) for r in mine[1:9]]
                                     for f in ("prompt", "chosen", "rejected")])
    target = mine[0]
    cands = [target.rejected, target.chosen, "An unrelated sentence about the weather."]
    ranked = rank(scorer, belief, target.prompt, cands)
    mean, _ = scorer.score(belief, target.prompt, cands)
    assert ranked[0].text == cands[int(np.argmax(mean))]  # best-of-N is the argmax
    assert [r.reward for r in ranked] == sorted(mean.tolist(), reverse=True)
    assert ranked.index(next(r for r in ranked if r.text == target.chosen)) < \
        ranked.index(next(r for r in ranked if r.text == target.rejected))


def test_generate_command_ranks_one_set_of_candidates_for_each_user(run_dir, pets, tiny_lm,
                                                                    tmp_path, capsys):
    records, _ = load_records(pets / "test.jsonl")
    files = []
    for t in sorted({r.meta["user_type"] for r in records}):
        uid = next(r.user_id for r in records if r.meta["user_type"] == t)
        path = tmp_path / f"{t}.jsonl"
        path.write_text("".join(json.dumps({"prompt": r.prompt, "chosen": r.chosen,
                                            "rejected": r.rejected}) + "\n"
                                for r in records if r.user_id == uid))
        files.append(str(path))
    assert main(["generate", "--run", str(run_dir), "--context", *files, "--prompt",
                 "the ferret", "--n", "3", "--lm", f"causal:{tiny_lm}", "--max-new-tokens",
                 "4"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["user"] for o in out] == files
    texts = [sorted(r["text"] for r in o["ranked"]) for o in out]
    assert texts[0] == texts[1] and len(texts[0]) == 3  # generated once, ranked per user
    for o in out:
        rewards = [r["reward"] for r in o["ranked"]]
        assert rewards == sorted(rewards, reverse=True)
