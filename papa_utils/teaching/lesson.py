"""What the teaching notebook says about its own output: each "what to notice" sentence is computed from the numbers
the notebook just made, so it cannot contradict them on another model, task or corpus."""
from __future__ import annotations

import pandas as pd
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
            said += (": about as much, so for these heads the average adds little to spreading the attention evenly. "
                     "A hypothesis to test: the input-dependence score measures a head against its average, so for "
                     "such heads a low score may say more about how broadly the head attends than about a pattern "
                     "its average keeps.")
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


def _within_layer(table: pd.DataFrame) -> pd.Series:
    """Each head's input dependence minus the mean of its own layer (rows: heads with "layer" and "input
    dependence"): the comparison that holds depth fixed."""
    return table["input dependence"] - table.groupby("layer")["input dependence"].transform("mean")


def head_type_notes(table: pd.DataFrame, taxonomy: str, quarter: str = "least dependent quarter") -> str:
    """What one taxonomy's head types say about input dependence (`table`: one row per head with `taxonomy`,
    "layer", "input dependence" and its "quarter" of the ranking): which types fill the least dependent quarter,
    and each type's mean input dependence beside its mean difference from its own layer's heads."""
    first = table[table.quarter == quarter][taxonomy].value_counts()
    within = table.assign(within=_within_layer(table)).groupby(taxonomy).agg(
        average=("input dependence", "mean"), within=("within", "mean"), heads=("layer", "size"),
        layers=("layer", lambda l: sorted(set(int(x) for x in l))))
    said = (f"{taxonomy}: the {quarter} holds " + ", ".join(f"{n} {t}" for t, n in first.items())
            + ". By type, mean input dependence and, holding depth fixed, the mean difference from the heads of the "
            f"same layer: " + ", ".join(f"{t} {r.average:.3f} ({r.within:+.3f}; {r.heads} head{'s' * (r.heads != 1)}, "
                                        f"layer{'s' * (len(r.layers) != 1)} {', '.join(map(str, r.layers))})"
                                        for t, r in within.sort_values("average").iterrows()) + ".")
    # a type can be called least dependent within its layers only against another type that shares a layer with it
    ranked = within.sort_values("within")
    lowest, rest = ranked.index[0], ranked.iloc[1:]
    rivals = rest[[bool(set(r.layers) & set(ranked.layers.iloc[0])) for r in rest.itertuples()]]
    if len(rivals) and ranked.within.iloc[0] < rivals.within.min():
        said += f" Within their layers, {lowest} heads depend least on the input."
    return said


SAME_AS_LAYER = 0.25  # a difference under this share of a layer's spread (standard deviation) reads "about as"


def pos_notes(best: pd.DataFrame, scores: torch.Tensor, top: int = 8) -> str:
    """Where the heads with the strongest part-of-speech preference sit (`best`: one row per head with "layer",
    "head", "tag", "ratio") and how input-dependent they are against the other heads of their layers (`scores`
    [layers, heads])."""
    strongest = best.sort_values("ratio", ascending=False).head(top)
    layers = sorted(set(int(layer) for layer in strongest.layer))
    others = [float(scores[layer].mean()) for layer in strongest.layer]
    mine = [float(scores[int(r.layer), int(r.head)]) for r in strongest.itertuples()]
    difference = sum(m - o for m, o in zip(mine, others)) / len(mine)
    spread = sum(float(scores[layer].std(unbiased=False)) for layer in strongest.layer) / len(mine)  # a layer's spread
    said = (f"The {len(strongest)} head{'s' * (len(strongest) != 1)} with the strongest part-of-speech preference "
            f"sit{'s' * (len(strongest) == 1)} in layer"
            f"{'s' * (len(layers) != 1)} {', '.join(map(str, layers))}; against the mean of their own layer, their "
            f"input dependence is {difference:+.3f} on average (a layer's heads spread {spread:.3f} around its mean): ")
    if abs(difference) <= SAME_AS_LAYER * spread:
        return said + ("about as input-dependent as the other heads of their layer, so by this score their preference "
                       "neither marks them as harder nor as easier to replace.")
    return said + ("more input-dependent than their layer, as a head that must find the words of one tag should be."
                   if difference > 0 else "less input-dependent than the other heads of their layer, so by this "
                                          "score their preference does not make them harder to replace.")
