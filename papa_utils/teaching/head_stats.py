"""What each attention head does, measured: per-head statistics, how input-dependent a head is, the
rankings built from that, alternative constant matrices, and what replacing heads changes in the hidden states.

All statistics are means over REAL query rows (a row i with m_i = 1; padding rows never count), computed in
fp32 from the model's eager attention probabilities. Conventions: 0 log 0 = 0, natural logarithms.

- ``row_entropy``: -sum_j A[i, j] log A[i, j]. A head that attends uniformly to the n real tokens of its
  input has the maximal entropy log n (``head_statistics`` reports that uniform baseline beside it).
- ``head_statistics``: entropy, attention mass on [CLS], on separators ([SEP] / ``</s>``), on punctuation,
  and on the keys at offsets -1, 0, +1. Offsets count in real-token order (the PAPA layout leaves padding
  between segments, so "the previous token" of a second segment's first token is the last token of the first
  segment); an offset's mass is averaged over the rows where that neighbour exists.
- ``head_scores`` / ``input_dependence``: how far a head's attention on an input is from its PAPA substitute
  renorm(C * m m^T), the matrix that replaces it (``papa_utils.core.replace``): the Jensen-Shannon divergence of
  each real row (``input_dependence``, between 0 and log 2) and the squared distance of each real row
  (``variance``: the spread of a head's rows around its average, the statistic of work that freezes the
  heads whose attention varies least across inputs).
- ``hidden_state_change``: how much an intervention (``replace.patch_attention``, ``papa_utils.teaching.interventions``)
  moves the last layer's hidden states.
"""
from __future__ import annotations

import string

import torch
from torch.nn.functional import one_hot as nn_one_hot

from ..core.device import inputs_on, model_device
from ..core.models import describe
from ..core.packing import as_batch, run_backbone
from ..core.hooks import QK_PROJECTIONS, attention_modules
from ..core.head_scores import accumulate, js_divergence, means_of, row_mean, stacked_attention
from ..core.replace import patch_attention

OFFSETS = (-1, 0, 1)


def row_entropy(attention: torch.Tensor) -> torch.Tensor:
    """Entropy of each row of attention probabilities [..., L, L] -> [..., L] (natural log, 0 log 0 = 0)."""
    p = attention.to(torch.float32)
    return -torch.xlogy(p, p).sum(-1)


def real_token_positions(token_mask: torch.Tensor) -> torch.Tensor:
    """Position of each slot among the real tokens of its example ([B, L]; padding slots get -1)."""
    m = token_mask.to(torch.long)
    return torch.where(m > 0, m.cumsum(-1) - 1, torch.full_like(m, -1))


def offset_keys(token_mask: torch.Tensor, offset: int) -> torch.Tensor:
    """[B, L, L] true where key j is the real token `offset` places after the real query i (real-token order)."""
    pos = real_token_positions(token_mask)
    real = token_mask.bool()
    return (pos[:, None, :] - pos[:, :, None] == offset) & real[:, :, None] & real[:, None, :]


def attention_statistics(attentions, token_mask: torch.Tensor, key_groups: dict | None = None,
                         segments: torch.Tensor | None = None) -> dict:
    """Sums and row counts of the per-head statistics of one batch (see ``head_statistics``); attentions
    [B, layers, heads, L, L] or a model's tuple of per-layer tensors, key_groups name -> [B, L] bool; `segments`
    [B, L]: each position's segment (0, 1) for the mass a row puts on its own segment ("mass_own_segment")."""
    a = stacked_attention(attentions)
    real = token_mask.bool()
    out = {}
    n_real = real.sum(-1, keepdim=True).expand_as(real).to(torch.float32)
    out["entropy"] = row_mean(row_entropy(a), real)
    uniform = torch.log(n_real)[:, None, None, :].expand(a.shape[:-1])
    out["uniform_entropy"] = row_mean(uniform, real)
    for name, keys in (key_groups or {}).items():
        out[f"mass_{name}"] = row_mean((a * keys.to(torch.float32)[:, None, None, None, :]).sum(-1), real)
    if segments is not None:
        same = (segments[:, :, None] == segments[:, None, :]) & real[:, :, None] & real[:, None, :]
        out["mass_own_segment"] = row_mean((a * same.to(torch.float32)[:, None, None]).sum(-1), real)
    for o in OFFSETS:
        keys = offset_keys(token_mask, o)
        mass = (a * keys.to(torch.float32)[:, None, None]).sum(-1)
        out[f"offset_{o:+d}"] = row_mean(mass, keys.any(-1))
    return out


def key_groups(input_ids: torch.Tensor, token_mask: torch.Tensor, tokenizer) -> dict[str, torch.Tensor]:
    """Which key slots hold [CLS] (``<s>``), a separator ([SEP] / ``</s>``) or punctuation, as [B, L] bool."""
    real = token_mask.bool()
    ids = input_ids.cpu()
    punct_ids = [i for i in torch.unique(ids).tolist()
                 if (t := tokenizer.convert_ids_to_tokens(i).lstrip("Ġ▁")) and all(c in string.punctuation for c in t)
                 and i not in tokenizer.all_special_ids]
    return {"cls": (ids == tokenizer.cls_token_id) & real.cpu(),
            "sep": (ids == tokenizer.sep_token_id) & real.cpu(),
            "punctuation": torch.isin(ids, torch.tensor(punct_ids, dtype=ids.dtype)) & real.cpu()}


@torch.no_grad()
def head_statistics(model, tokenizer, batches, pairs: bool = False) -> dict[str, torch.Tensor]:
    """Per-head statistics over a corpus, each a [layers, heads] fp32 tensor averaged over real query rows:
    entropy, uniform_entropy (the entropy of uniform attention over the same rows: the maximum), mass_cls,
    mass_sep, mass_punctuation, offset_-1, offset_+0, offset_+1; with `pairs` (sentence pairs in the PAPA layout,
    whose second segment starts at slot L/2), mass_own_segment: the mass on the row's own segment."""
    was_training = model.training
    model.eval()
    device, sums = model_device(model), {}
    try:
        for batch in map(as_batch, batches):  # real-token statistics: the same from packed and padded batches
            out = run_backbone(model, batch, output_attentions=True)
            mask = batch.token_mask.to(device)
            groups = {k: v.to(device) for k, v in key_groups(batch.inputs["input_ids"], mask, tokenizer).items()}
            segments = (batch.slots >= batch.length // 2).to(device) if pairs else None
            accumulate(sums, attention_statistics(out.attentions, mask, groups, segments))
    finally:
        model.train(was_training)
    return means_of(sums)


@torch.no_grad()
def head_distances(model, batches) -> torch.Tensor:
    """The distance between every two heads' attention, as Clark et al. (2019, section 6) measure it: the
    Jensen-Shannon divergence between their rows on the same input, averaged over every real query row of the
    corpus: [layers * heads, layers * heads], symmetric, 0 on the diagonal; head (l, h) is row l * heads + h."""
    device, total, rows = model_device(model), None, 0.0
    for batch in map(as_batch, batches):
        out = run_backbone(model, batch, output_attentions=True)
        att = torch.stack(out.attentions, 1).flatten(1, 2).to(torch.float32)  # [B, K, W, W]
        real = batch.token_mask.to(device).bool()  # [B, W]
        p = att.permute(1, 0, 2, 3)[:, real]  # [K, rows, W]: every real query row of the batch, per head
        k = p.shape[0]
        sums = torch.stack([js_divergence(p[i][None], p).sum(-1) for i in range(k)])  # [K, K]
        total = sums if total is None else total + sums
        rows += float(real.sum())
    distance = total / max(rows, 1.0)
    return (distance + distance.T) / 2 * (1 - torch.eye(len(distance), device=distance.device))


def map_2d(distance: torch.Tensor) -> torch.Tensor:
    """Points in the plane whose distances best match `distance` [K, K] (classical multidimensional scaling of
    its square roots, a metric for the JS divergence): [K, 2]."""
    d2 = distance.to(torch.float64).clamp_min(0)  # the JS divergence is a squared metric
    k = len(d2)
    centre = torch.eye(k, dtype=d2.dtype) - 1.0 / k
    gram = -0.5 * centre @ d2 @ centre
    values, vectors = torch.linalg.eigh(gram)
    top = values.argsort(descending=True)[:2]
    return (vectors[:, top] * values[top].clamp_min(0).sqrt()).to(torch.float32)


# A head type holds when this share of an average real row's attention mass lands where the type says (Clark et
# al. 2019 call a head positional, [CLS] or [SEP] when most of its attention goes there); a broad head's rows have
# at least BROAD_ENTROPY of the entropy of uniform attention over the same rows.
TYPE_MASS = 0.5
MIXED_MASS = 0.25  # Kovaleva et al.'s vertical + diagonal: at least this much of each, neither reaching TYPE_MASS
BLOCK_MASS = 0.8  # their block: a pair's row keeps this much in its own segment (about half would be uniform)
BROAD_ENTROPY = 0.9
CLARK_TYPES = ("[CLS]", "[SEP]", "previous token", "next token", "current token", "broad", "other")
KOVALEVA_TYPES = ("vertical", "diagonal", "vertical + diagonal", "block", "heterogeneous")


def head_types(stats: dict) -> dict[str, list[list[str]]]:
    """Every head's type, [layers][heads], from ``head_statistics``, in two taxonomies:
    - "clark" (Clark et al. 2019, "What does BERT look at?"): the first that holds of "[CLS]", "[SEP]" (mass on
      them), "previous token", "next token", "current token" (mass at that offset), "broad" (entropy near uniform
      attention's), else "other";
    - "kovaleva" (Kovaleva et al. 2019, "Revealing the dark secrets of BERT"): "vertical" (mass on [CLS],
      separators and punctuation), "diagonal" (mass on the previous, current and next token), "vertical +
      diagonal" (some of both), "block" (a sentence pair's row keeps its attention in its own segment: needs
      ``head_statistics(..., pairs=True)``; without it no head is block), else "heterogeneous".
    Thresholds: ``TYPE_MASS``, ``MIXED_MASS``, ``BLOCK_MASS``, ``BROAD_ENTROPY``."""
    vertical = stats["mass_cls"] + stats["mass_sep"] + stats["mass_punctuation"]
    diagonal = stats["offset_-1"] + stats["offset_+0"] + stats["offset_+1"]
    broad = stats["entropy"] >= BROAD_ENTROPY * stats["uniform_entropy"]
    clark_rules = (("[CLS]", stats["mass_cls"] >= TYPE_MASS), ("[SEP]", stats["mass_sep"] >= TYPE_MASS),
                   ("previous token", stats["offset_-1"] >= TYPE_MASS), ("next token", stats["offset_+1"] >= TYPE_MASS),
                   ("current token", stats["offset_+0"] >= TYPE_MASS), ("broad", broad))
    kovaleva_rules = (("vertical", vertical >= TYPE_MASS), ("diagonal", diagonal >= TYPE_MASS),
                      ("vertical + diagonal", (vertical >= MIXED_MASS) & (diagonal >= MIXED_MASS)))
    if "mass_own_segment" in stats:
        kovaleva_rules += (("block", stats["mass_own_segment"] >= BLOCK_MASS),)
    layers, heads = stats["entropy"].shape

    def first(rules, fallback, layer, head):
        return next((name for name, holds in rules if bool(holds[layer, head])), fallback)

    return {"clark": [[first(clark_rules, "other", l, h) for h in range(heads)] for l in range(layers)],
            "kovaleva": [[first(kovaleva_rules, "heterogeneous", l, h) for h in range(heads)] for l in range(layers)]}


@torch.no_grad()
def pos_attention(model, batches, tags: int) -> dict[str, torch.Tensor]:
    """How much of each head's attention lands on words of each part of speech, against chance. `batches`: dicts
    of a token task in the PAPA layout (model inputs and "labels" [B, L]: a word's tag on its first sub-token,
    -100 elsewhere), e.g. CoNLL-2003 POS. Over every real query row: "mass" [layers, heads, tags], the mean share
    of the row's attention on keys tagged t; "chance" [tags], the mean share of the row's real keys tagged t (what
    uniform attention over the real tokens would put there); "ratio" = mass / chance (NaN for a tag never seen)."""
    device, total, chance, rows = model_device(model), None, torch.zeros(tags), 0
    for batch in batches:
        a = stacked_attention(model(**inputs_on(batch, device), output_attentions=True).attentions).float().cpu()
        real = batch["attention_mask"].bool()
        labels = batch["labels"]
        tagged = nn_one_hot(labels.clamp_min(0), tags).float() * (labels >= 0)[..., None]  # [B, L, T]
        per_row = torch.einsum("bnhij,bjt->bnhit", a, tagged) * real[:, None, None, :, None]
        total = per_row.sum((0, 3)) if total is None else total + per_row.sum((0, 3))
        n_real = real.sum(-1)  # every real row of an example has the same keys
        chance += (tagged.sum(1) / n_real.clamp_min(1)[:, None] * n_real[:, None]).sum(0)
        rows += int(n_real.sum())
    mass, chance = total / max(rows, 1), chance / max(rows, 1)
    return {"mass": mass, "chance": chance, "ratio": mass / chance.where(chance > 0, torch.tensor(float("nan")))}


@torch.no_grad()
def hidden_state_change(model, patch, batches) -> float:
    """Mean relative change ||h' - h|| / ||h|| of the last layer's hidden states over real tokens when every
    layer attends with `patch(layer, probs, token_mask)` (``replace.patch_attention``; ``papa_utils.teaching.interventions``
    has PAPA's mix and the usual ablations)."""
    return hidden_state_changes(model, {"": patch}, batches)[""]


def hidden_state_changes(model, patches: dict, batches) -> dict:
    """``hidden_state_change`` of each patch of `patches` ({key: patch}), each batch's unpatched pass run once for
    them all: {key: mean relative change}."""
    device = model_device(model)
    total, count = dict.fromkeys(patches, 0.0), 0.0
    for batch in map(as_batch, batches):
        before = run_backbone(model, batch).last_hidden_state.float()
        real = batch.token_mask.to(device).bool()
        norm = before.norm(dim=-1).clamp_min(1e-12)
        for key, patch in patches.items():
            with patch_attention(model, patch):
                after = run_backbone(model, batch).last_hidden_state.float()
            total[key] += float(((after - before).norm(dim=-1) / norm)[real].sum())
        count += float(real.sum())
    return {key: value / max(count, 1.0) for key, value in total.items()}


def heads_of_layer(model, layer: int) -> list[tuple[int, int]]:
    """Every (layer, head) pair of one layer."""
    info = describe(model)
    if not 0 <= layer < info["layers"]:
        raise ValueError(f"layer {layer} is out of range: {info['name']} has {info['layers']} layers")
    return [(layer, h) for h in range(info["heads"])]


def attention_row_checks(attentions, token_mask: torch.Tensor) -> dict:
    """How far a model's attention is from "each real row is a probability distribution over the real keys":
    the largest |row sum over real keys - 1| and the largest weight on a padding key, over real rows."""
    a = stacked_attention(attentions)
    real = token_mask.bool()
    rows = real[:, None, None, :].expand(a.shape[:-1])
    keys = real.to(a.dtype)[:, None, None, None, :]
    return {"max_row_sum_error": float(((a * keys).sum(-1) - 1).abs()[rows].max()),
            "max_padding_weight": float((a * (1 - keys)).amax(-1)[rows].max())}


@torch.no_grad()
def recompute_attention(model, inputs: dict, layer: int, head: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One head's attention [B, L, L] computed by hand from its own queries and keys, softmax(q k^T / sqrt(d)
    + key mask (+ MPNet's relative position bias)), and the model's own, for comparison. BERT-style models and
    MPNet (the offline models)."""
    device = model_device(model)
    inputs = inputs_on(inputs, device)
    out = model(**inputs, output_attentions=True, output_hidden_states=True)
    _, modules = attention_modules(model)
    module = modules[layer]
    kind = type(module).__name__
    if kind not in ("BertSelfAttention", "RobertaSelfAttention", "ElectraSelfAttention", "MPNetSelfAttention"):
        raise NotImplementedError(f"recompute_attention knows BERT-style self-attention and MPNet, not {kind}")
    hidden = out.hidden_states[layer]
    q_name, k_name = QK_PROJECTIONS[kind]
    d = getattr(module, q_name).out_features // describe(model)["heads"]
    q = getattr(module, q_name)(hidden)[..., head * d:(head + 1) * d]
    k = getattr(module, k_name)(hidden)[..., head * d:(head + 1) * d]
    scores = q @ k.transpose(-1, -2) / d ** 0.5
    if kind == "MPNetSelfAttention":
        scores = scores + model.encoder.compute_position_bias(hidden)[:, head]
    real_keys = inputs["attention_mask"].bool()[:, None, :]
    scores = scores.masked_fill(~real_keys, torch.finfo(scores.dtype).min)
    return scores.softmax(-1), out.attentions[layer][:, head]
