"""The cost model: how many examples one cell of a profile puts through the backbone (``cell_passes``), checked
against a counted run (``counting_backbone_examples``); ``bench.py --only paper_cost`` turns it into hours."""
from __future__ import annotations

from contextlib import contextmanager

import torch

from ..settings.profiles import Profile


def cell_passes(profile: Profile, model_name: str, task: str, total_heads: int, train_split: int,
                dev_split: int) -> dict:
    """How many examples one cell's steps (``cell_steps``) put through the backbone, for a profile with the
    streaming protocol and the gates' ranking (the paper's): the averages pass; for each sweep point (and the
    attention-free probe at k = 0), every seed and epoch, the training and dev examples; the gates, forward and
    backward, for each ranking epoch. `train_split` / `dev_split`: the whole splits' sizes (the profile's sizes
    cap them). Returns {"forward": examples, "forward_backward": examples}; ``bench.py --only paper_cost`` checks
    it against a counted run."""
    if profile.protocol != "streaming" or profile.ranking != "gates" or profile.compare_rankings:
        raise ValueError(f"cell_passes counts the paper's path (streaming, gates, no compared rankings); profile "
                         f"{profile.name} has protocol {profile.protocol!r}, ranking {profile.ranking!r}")

    def size(name, whole):
        n = profile.size(model_name, name, task)
        return whole if n is None else min(n, whole)

    probes = len(profile.sweep_counts(model_name, total_heads)) + 1
    rankings = 1 + (2 if profile.ranking_stability else 0)  # another seed and a disjoint subset
    return {"forward": size("average_examples", train_split) + probes * len(profile.seeds) * profile.epochs
            * (size("train_examples", train_split) + size("dev_examples", dev_split)),
            "forward_backward": rankings * profile.rank_epochs * size("rank_examples", train_split)}


@contextmanager
def counting_backbone_examples(model):
    """Count the examples every call of `model` gets, inside the block: {"forward": without gradients,
    "forward_backward": with them (the gates)}; what ``cell_passes`` predicts."""
    counted = {"forward": 0, "forward_backward": 0}

    def count(module, args, kwargs):
        counted["forward_backward" if torch.is_grad_enabled() else "forward"] += kwargs["input_ids"].shape[0]

    hook = model.register_forward_pre_hook(count, with_kwargs=True)
    try:
        yield counted
    finally:
        hook.remove()
