"""What the teaching notebook says about its own output: each "what to notice" sentence is computed from the numbers
the notebook just made, so it cannot contradict them on another model, task or corpus."""
from __future__ import annotations

import torch


def layer_notes(scores: torch.Tensor, ranking: list, share: float = 0.25) -> str:
    """The layer confound of an input-dependence ranking (`scores` [layers, heads], `ranking` least dependent
    first): where the least dependent `share` of the heads sit, how the layer means compare, and which head is the
    least and the most input-dependent within each layer, the comparison that holds depth fixed."""
    layers, heads = scores.shape
    first = ranking[: max(1, int(len(ranking) * share))]
    counts = [sum(1 for layer, _ in first if layer == i) for i in range(layers)]
    means = scores.mean(1)
    top = max(range(layers), key=lambda i: counts[i])
    rising = all(means[i] <= means[i + 1] for i in range(layers - 1))
    within = "; ".join(f"layer {i}: least {(i, int(scores[i].argmin()))} {float(scores[i].min()):.3f}, most "
                       f"{(i, int(scores[i].argmax()))} {float(scores[i].max()):.3f}" for i in range(layers))
    return (f"{counts[top]} of the {len(first)} least input-dependent heads sit in layer {top}, which holds {heads} of "
            f"the {layers * heads} heads. The layer means are " + ", ".join(f"{float(m):.3f}" for m in means)
            + (": input dependence rises with depth, so a ranking over all heads is partly a ranking of layers."
               if rising else ": they do not simply rise with depth.")
            + f" Within each layer, where depth is the same: {within}.")


ABOUT_AS_MUCH = (0.8, 1.25)  # a ratio of two changes within these bounds reads "about as much"


def intervention_notes(table: dict, single: list[str], everything: str = "all heads") -> str:
    """What the intervention table (kind -> scope -> relative change of the last hidden states) says about PAPA's
    average against uniform attention: for the single-head scopes and for every head, the two changes and their
    ratio. Where they are close, the average carries little beyond "spread the attention over the real tokens"
    for those heads."""
    papa, uniform = table["PAPA average"], table["uniform"]
    parts = [f"{scope}: PAPA's average {papa[scope]:.3f}, uniform {uniform[scope]:.3f}" for scope in single + [everything]]
    ratios = [papa[scope] / uniform[scope] for scope in single if uniform[scope] > 0]
    said = "; ".join(parts) + "."
    if ratios:
        low, high = min(ratios), max(ratios)
        said += (f" For a single head the average changes the hidden states by {low:.2f} to {high:.2f} times what "
                 f"uniform attention does")
        if ABOUT_AS_MUCH[0] <= low and high <= ABOUT_AS_MUCH[1]:
            said += ": about as much, so for these heads the average adds little to spreading the attention evenly."
        elif high < ABOUT_AS_MUCH[0]:
            said += ": less, so the average keeps structure that uniform attention loses."
        elif low > ABOUT_AS_MUCH[1]:
            said += ": more, so the average moves these heads further from what they do than uniform attention."
        else:
            said += ": as much for some heads and not for others."
    if uniform[everything] > 0:
        said += (f" With every head replaced, the average moves them {papa[everything] / uniform[everything]:.2f} times "
                 f"as far as uniform attention.")
    return said


def length_note(task: str, length: int, published_length: int, truncated: float) -> str:
    """Whether this run's layout length L is the one of the published copy, and what a shorter one cuts."""
    if length == published_length:
        return f"This run lays {task} out at L = {length}, as the published copy does."
    return (f"This run lays {task} out at L = {length}; the published copy uses L = {published_length}. At "
            f"L = {length} the layout cuts {100 * truncated:.0f}% of these examples, so its heads, statistics and "
            f"scores differ from the published ones.")


def cluster_notes(distance: torch.Tensor, layers: int, heads: int) -> str:
    """Whether heads of one layer attend alike (``head_stats.head_distances``): the mean distance between two
    heads of the same layer against two heads of different layers, and the closest pair."""
    layer = torch.arange(layers).repeat_interleave(heads)
    same = (layer[:, None] == layer[None]) & ~torch.eye(len(layer), dtype=torch.bool)
    other = layer[:, None] != layer[None]
    within, across = float(distance[same].mean()), float(distance[other].mean())
    masked = distance + torch.eye(len(distance)) * float("inf")
    i = int(masked.argmin())
    a, b = divmod(i, len(distance))
    return (f"Two heads of the same layer are {within:.3f} apart on average, two heads of different layers "
            f"{across:.3f}: heads of one layer attend {'more' if within < across else 'less'} alike than heads of "
            f"different layers. The closest pair is {(a // heads, a % heads)} and {(b // heads, b % heads)} "
            f"({float(distance[a, b]):.3f}).")
