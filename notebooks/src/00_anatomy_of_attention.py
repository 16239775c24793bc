# ---
# jupyter:
#   jupytext:
#     formats: ipynb,src//py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 0. Anatomy of attention: what do heads do, and how much do they depend on the input?
#
# The starting point for teaching with this repository. On a small pretrained encoder that runs offline on a
# laptop, we look at attention the way the attention-analysis literature does (single inputs, per-head
# statistics), then ask PAPA's question: **how input-dependent is each head, and what happens when it is
# replaced by its average?** Every computation lives in `papa_utils.teaching.head_stats` (tested); this notebook
# narrates and plots. Figures go to `figures/` in the run folder, like the other notebooks'.
#
# **A 90-minute class.** Objectives: read an attention pattern and check that it is one; measure what heads attend
# to over a corpus and how much each depends on its input; replace heads and measure what changes, and say why a
# weight alone explains nothing. Each section asks you to **predict** before you run it, then says what to
# **observe** (sentences computed from this run's numbers) and leaves the **explanation** to you.
#
# | section | minutes | predict before you run it |
# |---|---|---|
# | 1-2. This is attention; one input | 10 | which shapes (previous token, `[CLS]`, separators) will a small encoder show? |
# | 3. Statistics over a corpus; heads that attend alike | 10 | will the heads that look positional on one input look so on average? do heads of one layer attend alike? |
# | 4. The average against one input | 10 | which head's average will be closest to its attention on one input? |
# | Exercise 4: predict the replaceable heads | 10 | (your prediction is the exercise) |
# | 5. Input dependence, and the layer confound | 15 | do the least input-dependent heads share a layer? |
# | 6. Interventions | 15 | will PAPA's average change the hidden states less than uniform attention? |
# | 7. Exercises 1-3 and 5 | 20 | |
#
# > **Attention weights are not explanations.** A head that puts its weight on a token does not show that the
# > token matters for the model's output: the values it mixes, the other heads, the residual stream and the
# > layers above all decide that, and different attention patterns can lead to the same prediction (Jain &
# > Wallace 2019; Wiegreffe & Pinter 2019; Bibal et al. 2022). What we measure here is what attention *is* on
# > these inputs, and, by intervening, what changes when it is replaced. Only the intervention says anything
# > about what the model uses, and then only about the representations we measure.
#
# Parameters: `model` (default: the profile's first model, the smallest; any name of `papa_utils.OFFLINE_MODELS`,
# a local folder or a Hub id), `task` (default MRPC, a sentence-pair task), `examples` (the corpus for the
# statistics). The corpus is the start of the training subset the averages are built from, so the scores are
# in-sample: a head is compared with an average that includes these very inputs.

# %% tags=["parameters"]
profile = "smoke"
models = ""
tasks = ""
ranking = ""  # how the partial sweep orders the heads (empty: the profile's)
passes = ""  # backbone passes: packed (real tokens only) or padded (the whole layout); empty: the profile's
run_dir = ""  # empty: runs/<run name> ($PAPA_RUNS_DIR instead of runs/ when set)
model = ""  # empty: the profile's first model
task = ""  # empty: MRPC (a sentence pair) when the profile has it, else the profile's first task
examples = 64  # corpus for the per-head statistics and scores

# %%
import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import display

from papa_utils import describe, get_task
from papa_utils.core.backbones import cached_model, example_attention
from papa_utils.core.device import inputs_on, model_device
from papa_utils.teaching.exercises import (check_entropy, check_intervention, check_prediction, check_score,
                                  check_substitute)
from papa_utils.reports.figures import save_figure, show_figure
from papa_utils.teaching.plots import (in_words, plot_average_vs_input, plot_head_clusters, plot_head_map,
                                       plot_one_input)
from papa_utils.teaching.head_stats import attention_row_checks, head_distances, head_statistics, head_types, heads_of_layer, hidden_state_changes, map_2d, pos_attention, recompute_attention
from papa_utils.core.head_scores import head_scores, papa_substitute, ranking_from_scores
from papa_utils.teaching.interventions import PATTERNS, on_heads, papa_mix
from papa_utils.core.layout import truncated_share
from papa_utils.teaching.lesson import (cluster_notes, head_type_notes, intervention_notes, layer_notes, length_note,
                                        pos_notes)
from papa_utils.core.packing import backbone_batches, run_backbone
from papa_utils.settings.profiles import get_profile
from papa_utils.core.replace import patch_attention, record_attention
from papa_utils.records.runs import figures_dir, notebook_run
from papa_utils.runner.steps import average_attention, encoded, task_data
from papa_utils.settings.tasks import POS_LABELS

profile, run_dir = notebook_run(profile, models, tasks, ranking, passes, run_dir)
model_name = model or profile.models[0]
task = task or ("mrpc" if "mrpc" in profile.tasks else profile.tasks[0])
spec = get_task(task)  # an unknown task fails here, listing the known ones
net, tokenizer = cached_model(model_name)  # an unknown model fails here, listing the offline ones
info = describe(net)
length = profile.length(task)
corpus_data = task_data(task, "train", examples)
corpus = encoded(model_name, corpus_data, length)
figures = figures_dir(run_dir)
print(f"{model_name}: {info['layers']} layers x {info['heads']} heads, hidden size {info['hidden']}; task {task}, "
      f"L = {length}, corpus of {len(corpus)} training examples")
print(length_note(task, length, get_profile("cpu").length(task), truncated_share(corpus_data, tokenizer, length)))

# %% [markdown]
# ## 1. This really is attention
# For every head, each row (a query token) is a probability distribution over the keys: it sums to 1 over the
# real tokens and puts exactly 0 on padding. And we can recompute a head's pattern from its own queries and keys,
# softmax(q kᵀ / √d), and get what the model returned.

# %%
batch = next(corpus.batches(16))
with torch.no_grad():
    out = net(**inputs_on(batch, model_device(net)), output_attentions=True)
print(attention_row_checks(out.attentions, batch["attention_mask"].to(net.device)))
by_hand, returned = recompute_attention(net, batch, layer=0, head=0)
print(f"layer 0 head 0 recomputed from q and k: largest difference {float((by_hand - returned).abs().max()):.2e}")
assert torch.allclose(by_hand, returned, atol=1e-5)

# %% [markdown]
# ## 2. One input
# A few heads on one sentence pair, tokens on the axes (padding left out). Look for the classic shapes:
# attention to the previous or next token, to `[CLS]` or `[SEP]`, broad averaging.

# %%
attention, tokens = example_attention(model_name, task, length, index=0)
last = info["layers"] - 1
heads = [(0, 0), (0, 1), (last // 2, 2), (last, 3)]
fig = plot_one_input(attention, tokens, heads, title=f"{model_name}, one {task} example")
save_figure(fig, figures / f"one_input_{model_name.replace('/', '--')}_{task}")

# %% [markdown]
# ### The PAPA layout against the tokenizer's normal input
# Everything in this notebook runs on the **PAPA layout** (`papa_utils.core.layout`), not on the tokenizer's normal
# input. The normal input packs the tokens from slot 0 (`[CLS] A [SEP] B [SEP]`) and pads at the end, so a role
# lands in a different slot on every input: the first segment's separator sits at slot 4 in one example and at
# slot 17 in the next. PAPA replaces each head by **one constant L × L matrix**: entry (i, j) must mean the same
# thing on every input, so every role gets a fixed slot. `[CLS]` is at slot 0 and the first segment starts at slot
# 1; the separator between the segments sits at slot L/2 and the second segment follows it; padding fills the gaps,
# and the final separator is always at slot L − 1.
# Below: where this example's tokens land in both, and one head's attention on each (real tokens only). The
# attention differs a little, because the positions differ.

# %%
shortest = int(corpus.attention_mask.sum(1).argmin())  # the corpus's shortest example: the layout pads it most
row = corpus_data.frame.iloc[shortest]
texts = [row[c] if not isinstance(row[c], (list, tuple)) else " ".join(row[c]) for c in spec.text_columns]
normal = tokenizer(*texts, truncation=True, max_length=length, return_tensors="pt")
normal_tokens = tokenizer.convert_ids_to_tokens(normal["input_ids"][0].tolist())
real_slots = corpus.attention_mask[shortest].nonzero().flatten().tolist()
papa_tokens = tokenizer.convert_ids_to_tokens(corpus.input_ids[shortest].tolist())
print("normal input:", " ".join(f"{i}:{t}" for i, t in enumerate(normal_tokens)))
print("PAPA layout: ", " ".join(f"{i}:{papa_tokens[i]}" for i in real_slots), f"(L = {length}; every other slot is padding)")
layer, head = heads[-1]
with torch.no_grad():
    on_normal = net(**inputs_on(normal, model_device(net)), output_attentions=True).attentions[layer][0, head].cpu()
    on_layout = net(**inputs_on(corpus.model_inputs(slice(shortest, shortest + 1)), model_device(net)),
                    output_attentions=True).attentions[layer][0, head].cpu()[real_slots][:, real_slots]
if len(normal_tokens) == len(real_slots) and not spec.token_task:  # the same tokens, so one to one
    both = torch.stack([on_normal, on_layout])[None]  # [1, 2, n, n]
    show_figure(plot_one_input(both, normal_tokens, [(0, 0), (0, 1)],
                               titles=[f"normal input, layer {layer} head {head}", f"PAPA layout, layer {layer} head {head}"]))
    print(f"largest difference between the two: {float((on_normal - on_layout).abs().max()):.3f}")

# %% [markdown]
# ## 3. Per-head statistics over a small corpus
# Averaged over every real query row of the corpus: the entropy of a row (uniform attention over the n real
# tokens has the maximum, log n), the attention mass on `[CLS]`, on separators and on punctuation, and on the
# tokens at offsets −1, 0, +1 (in real-token order). Statistics over a corpus run on the real tokens only
# (packed passes, `papa_utils.core.packing`): the padding of the layout changes none of them.

# %%
stats = head_statistics(net, tokenizer, backbone_batches(corpus, 32, profile.passes), pairs=spec.is_pair)
maps = ["entropy", "mass_cls", "mass_sep", "mass_punctuation", "offset_-1", "offset_+0", "offset_+1"]
fig, axes = plt.subplots(len(maps), 1, figsize=(6.3, len(maps) * (0.3 * info["layers"] + 0.6)))
for ax, name in zip(axes, maps):
    title = name if name != "entropy" else f"entropy (uniform over the real tokens: {stats['uniform_entropy'].mean():.2f})"
    plot_head_map(stats[name], title=title, ax=ax, vmin=0)
fig.tight_layout()
save_figure(fig, figures / f"head_statistics_{model_name.replace('/', '--')}_{task}")

# %% [markdown]
# ### Which heads attend alike?
# Clark et al. (2019, section 6) measure how alike two heads attend by the Jensen–Shannon divergence between their
# rows on the same input, averaged over the corpus, and draw the heads in the plane so that alike heads sit close
# (multidimensional scaling). **Predict:** do heads of one layer sit together?

# %%
distance = head_distances(net, backbone_batches(corpus, 16, "padded"))
show_figure(plot_head_clusters(map_2d(distance), info["layers"], info["heads"],
                               title=f"{model_name}: heads by how alike they attend"))
print("What to notice:", cluster_notes(distance, info["layers"], info["heads"]))

# %% [markdown]
# The heads these maps single out, on the input of section 2: the one with the most mass on the previous
# token, on the next token, on separators, and the one with the highest entropy.

# %%
def strongest(values):
    i = int(values.flatten().argmax())
    return i // info["heads"], i % info["heads"]


picked = {name: strongest(stats[name]) for name in ("offset_-1", "offset_+1", "mass_sep", "entropy")}
titles = [f"most {in_words(name)}:\nlayer {layer}, head {head}" if name != "entropy" else
          f"highest entropy of a row:\nlayer {layer}, head {head}" for name, (layer, head) in picked.items()]
print("; ".join(title.replace("\n", " ") for title in titles))
show_figure(plot_one_input(attention, tokens, list(picked.values()), titles=titles,
                           title=f"{model_name}: the strongest head of four statistics, on the input of section 2"))

# %% [markdown]
# ## 4. The average against one input
# PAPA's constant matrix of a head is its average attention over the task's training inputs, in fixed slots
# (the PAPA layout). On an input it is masked to that input's real tokens and each row renormalised: the
# *substitute*. Left: the substitute; middle: the head's real attention on this input; right: their difference.

# %%
# the run's own averages; they keep the baseline's features only when the run's probes will use them
averages = average_attention(run_dir, profile, model_name, task,
                             keep_features=model_name in profile.models and task in profile.tasks)
mask = torch.tensor([1 if t else 0 for t in tokens])[None]
substitute = papa_substitute(averages.averages, mask)[0]
fig = plot_average_vs_input(substitute, attention, *heads[2], title=f"{model_name} {task}: layer {heads[2][0]} head {heads[2][1]}",
                            token_mask=mask[0], pair=spec.is_pair)
save_figure(fig, figures / f"average_vs_input_{model_name.replace('/', '--')}_{task}")

# %% [markdown]
# **Exercise 4: predict which heads are most replaceable.** Before section 5 measures it, use only the statistics of
# section 3 (`stats`: entropy, mass on `[CLS]` / `[SEP]`, offsets; each [layers, heads]) to pick the 10% of heads
# you expect to depend least on their input, as a list of (layer, head). The check measures the scores itself,
# without showing them, runs your function without the notebook's data (so that it answers from `stats` even after
# section 5 has printed the ranking), and passes only when your heads are less input-dependent than a random pick **from the same
# layers**: input dependence changes with depth, so a pick that only knows "layer 0" does not pass. It also counts
# how many of your heads the score puts in its own first 10%. One hypothesis to start from: heads that park their
# attention on a separator look the same on every input.

# %%
def my_prediction(stats, n):
    raise NotImplementedError("exercise 4")


# %%
n_predicted = max(1, info["layers"] * info["heads"] // 10)
print(check_prediction(my_prediction, stats, head_scores(net, averages, backbone_batches(corpus, 32, profile.passes))
                       ["input_dependence"], n_predicted))

# %% [markdown]
# ## 5. How input-dependent is each head?
# The **input-dependence score** of a head is the Jensen–Shannon divergence (natural log, between 0 and
# log 2 ≈ 0.69) between its attention row on an input and the substitute's row, averaged over every real query
# row of every example. A head that always equals its average scores 0. The **variance** score beside it is the
# mean squared distance of those rows. Low scores: heads that PAPA can replace at little cost, if the score is
# right (notebook 6 tests that against the paper's trained gates; the `cpu-robustness` run does it on every cell,
# in its copy `results/cpu-robustness/notebooks/06_gate_free_ranking.ipynb`).

# %%
scores = head_scores(net, averages, backbone_batches(corpus, 32, profile.passes))
fig, axes = plt.subplots(2, 1, figsize=(6.3, 2 * (0.3 * info["layers"] + 0.8)))
plot_head_map(scores["input_dependence"], title="input dependence (JS divergence from the substitute)", ax=axes[0],
              unit="JS divergence")
plot_head_map(scores["variance"], title="variance around the average", ax=axes[1], fmt=".3f", unit="variance")
fig.tight_layout()
save_figure(fig, figures / f"input_dependence_{model_name.replace('/', '--')}_{task}")
ranking = ranking_from_scores(scores["input_dependence"])
score_of = lambda h: float(scores["input_dependence"][h])  # noqa: E731
print("least input-dependent heads (replaced first):", ", ".join(f"{h} {score_of(h):.3f}" for h in ranking[:5]))
print("most input-dependent heads:", ", ".join(f"{h} {score_of(h):.3f}" for h in ranking[-5:]))
first = ranking[: max(1, len(ranking) // 4)]
print("What to notice:", layer_notes(scores["input_dependence"], ranking))

# %% [markdown]
# ### Known head types, and where PAPA's heads fall among them
# The attention-analysis literature sorts heads by what they attend to. **Clark et al. (2019)** found heads that put
# most of their attention on `[CLS]`, on `[SEP]`, on the previous or the next token, and broad heads that spread it
# evenly; **Kovaleva et al. (2019)** sorted attention maps into *vertical* (everything on `[CLS]`, separators,
# punctuation), *diagonal* (the previous, current or next token), *vertical + diagonal*, *block* (within one's own
# segment) and *heterogeneous*. Below, every head gets both labels from the statistics of section 3
# (`papa_utils.teaching.head_stats.head_types`: a type holds when at least half of an average row's mass goes where it
# says; a block head keeps 80% of a pair's row in its own segment, about half being what uniform attention would
# keep, so there are block heads only on a sentence-pair task such as MRPC), and the tables count each type in
# each quarter of the input-dependence ranking. If PAPA's
# replaceable heads are the vertical and positional ones, the least dependent quarter is where they gather.
#
# > **Related work, one line each.** Clark et al. 2019 (*What does BERT look at?*): heads with positional, `[CLS]`,
# > `[SEP]` and broad patterns, and heads that follow syntax. Kovaleva et al. 2019 (*Revealing the dark secrets of
# > BERT*): the five pattern types, and that disabling heads can help. Voita et al. 2019 (*Analyzing multi-head
# > self-attention*): heads pruned with trained gates, the ancestor of PAPA's gates. Michel et al. 2019 (*Are
# > sixteen heads really better than one?*): many heads can be removed at test time. Raganato et al. 2020 (*Fixed
# > encoder self-attention patterns*): hand-fixed positional patterns lose little in translation, a constant
# > pattern chosen by hand where PAPA averages. Tay et al. 2021 (*Synthesizer*): attention weights learned without
# > token-token interaction, an input-independent attention trained from scratch. Kobayashi et al. 2020
# > (*Attention is not only a weight*): the norms of the mixed vectors change what a weight means, a reason to
# > read intervention results rather than weights.

# %%
types = head_types(stats)
order = {head: rank for rank, head in enumerate(ranking)}  # 0 = the least input-dependent
quarters = ["least dependent quarter", "second quarter", "third quarter", "most dependent quarter"]
heads_table = pd.DataFrame([{"layer": l, "head": h, "Clark et al.": types["clark"][l][h],
                             "Kovaleva et al.": types["kovaleva"][l][h],
                             "input dependence": float(scores["input_dependence"][l, h]),
                             "quarter": quarters[4 * order[(l, h)] // len(ranking)]}
                            for l in range(info["layers"]) for h in range(info["heads"])])
for taxonomy in ("Clark et al.", "Kovaleva et al."):
    counts = pd.crosstab(heads_table[taxonomy], heads_table["quarter"]).reindex(columns=quarters, fill_value=0)
    counts["mean input dependence"] = heads_table.groupby(taxonomy)["input dependence"].mean().round(3)
    display(counts)
    print("What to notice:", head_type_notes(heads_table, taxonomy))

# %% [markdown]
# ### Heads that attend to one part of speech
# Clark et al. also found heads that follow syntax. A first look with the part-of-speech tags of CoNLL-2003 (the
# `pos` task's data): for every head, the share of its attention that lands on words of each tag, against the share
# of the real tokens that carry that tag (what uniform attention would give). A ratio of 3 means three times more
# attention on that part of speech than chance (`papa_utils.teaching.head_stats.pos_attention`; tags on at least 2% of the
# tokens only, a word counted at its first sub-token). Compare the heads found here with their input dependence:
# a head that looks for nouns must see where the nouns are, so it should not be replaceable by an average.

# %%
pos_corpus = encoded(model_name, task_data("pos", "train", 256), profile.length("pos"))
pos = pos_attention(net, pos_corpus.batches(32), len(POS_LABELS))
frequent = (pos["chance"] >= 0.02).nonzero().flatten().tolist()
best = [{"layer": l, "head": h, **max(({"tag": POS_LABELS[t], "attention share": float(pos["mass"][l, h, t]),
                                        "chance": float(pos["chance"][t]), "ratio": float(pos["ratio"][l, h, t])}
                                       for t in frequent), key=lambda row: row["ratio"]),
         "input dependence": float(scores["input_dependence"][l, h])}
        for l in range(info["layers"]) for h in range(info["heads"])]
print("What to notice:", pos_notes(pd.DataFrame(best), scores["input_dependence"]))
pd.DataFrame(best).sort_values("ratio", ascending=False).head(8).round(3)

# %% [markdown]
# ## 6. Intervention: replace heads and watch the hidden states
# First by hand. Every layer has named points (`papa_utils.hook_names`): `blocks.{layer}.attn.pattern` is what the
# layer attends with. `record_attention` keeps them; `patch_attention` takes a function for all layers, or a dict of
# points. Below, layer 0 attends with uniform attention and we record what each layer used. **Predict:** does
# layer 1's pattern change too, though nothing patched it?

# %%
probe_batch = next(iter(backbone_batches(corpus, 8, "padded")))
with record_attention(net) as before:
    run_backbone(net, probe_batch)
with patch_attention(net, {"blocks.0.attn.pattern": on_heads(PATTERNS["uniform"])}), record_attention(net) as after:
    run_backbone(net, probe_batch)
changes = {name: float((after[name] - before[name]).abs().max()) for name in before if name.endswith(".pattern")}
for name, change in changes.items():
    print(f"{name}: largest change {change:.3f}")
moved = [name for name, change in list(changes.items())[1:] if change > 1e-3]
print("What to notice:", f"{', '.join(moved)} attend{'s' * (len(moved) == 1)} differently although only layer 0 was "
      "patched: their queries and keys are computed from layer 0's output, which the uniform pattern changed."
      if moved else "no later layer changed: nothing downstream reads layer 0's output here.")

# %% [markdown]
# Now every intervention of `papa_utils.teaching.interventions`, on a few scopes.
# One hook puts any attention pattern into the model: `patch_attention(model, fn)` calls `fn(layer, probs,
# token_mask)` in every layer and attends with what it returns (`papa_utils.teaching.interventions`). Replace one head (the
# least and the most input-dependent), one layer, then every head, with its PAPA average and with the usual
# ablations: nothing (zero), the batch's mean, uniform over the real tokens, the previous real token, the first
# token (`[CLS]`), the token itself. The number is the mean relative change of the last layer's hidden states
# over real tokens, ‖h′ − h‖ / ‖h‖ (0 = nothing changed). What it costs a task probe is what notebooks 2 and 3
# measure.

# %%
scopes = {f"head {ranking[0]} (least dependent)": [ranking[0]], f"head {ranking[-1]} (most dependent)": [ranking[-1]],
          "layer 0": heads_of_layer(net, 0), "all heads": "all"}
interventions = {"PAPA average": lambda heads: papa_mix(net, averages, heads),
                 **{name: (lambda heads, pattern=pattern: on_heads(pattern, heads)) for name, pattern in PATTERNS.items()}}
whole_layout = list(backbone_batches(corpus, 32, "padded"))  # the PAPA average is a matrix over the layout's slots
changes = hidden_state_changes(net, {(kind, scope): make(replaced) for kind, make in interventions.items()
                                     for scope, replaced in scopes.items()}, whole_layout)  # one unpatched pass for all
table = {kind: {scope: changes[(kind, scope)] for scope in scopes} for kind in interventions}
print("What to notice:", intervention_notes(table, list(scopes)[:2]))
pd.DataFrame(table).T.round(3)

# %% [markdown]
# ## 7. Exercises
# Each exercise is a function to write: it ships unsolved (it raises `NotImplementedError`), and the cell after it
# checks your answer against `papa_utils` and says "correct", "not yet right" (with how far off) or "not solved
# yet". The checks never stop the notebook. Reference solutions are in `papa_utils/teaching/solutions.py`: look there after
# trying.
#
# **Exercise 1: entropy of attention rows.** Given probabilities `p` of shape [..., L], return −Σⱼ pⱼ log pⱼ
# with 0 log 0 = 0.

# %%
def my_entropy(p):
    raise NotImplementedError("exercise 1")


# %%
print(check_entropy(my_entropy, out.attentions[0]))

# %% [markdown]
# **Exercise 2: the PAPA substitute.** Given constant matrices `C` [layers, heads, L, L] and a token mask `m`
# [B, L], return renorm(C ⊙ m mᵀ) [B, layers, heads, L, L]: mask out pairs with a padding slot, divide each row
# by its sum (rows that are all zero stay zero).

# %%
def my_substitute(C, m):
    raise NotImplementedError("exercise 2")


# %%
m = batch["attention_mask"]
print(check_substitute(my_substitute, averages.averages, m))

# %% [markdown]
# **Exercise 3: the input-dependence score of one head.** For one example's attention `a` [L, L] of a head, its
# substitute `s` [L, L] and the example's token mask `m` [L], return the mean over the real query rows of
# JS(a[i], s[i]) = ½ KL(a[i] ‖ M) + ½ KL(s[i] ‖ M), M = (a[i] + s[i]) / 2, natural log.

# %%
def my_score(a, s, m):
    raise NotImplementedError("exercise 3")


# %%
sub = papa_substitute(averages.averages, m)
layer, head = min(1, len(out.attentions) - 1), min(4, out.attentions[0].shape[1] - 1)  # any head will do
print(check_score(my_score, out.attentions[layer][0, head].float().cpu(), sub[0, layer, head], m[0]))


# %% [markdown]
# **Exercise 5: your own intervention.** Write a `patch_attention` function under which every real token attends
# only to the final separator (the last real token of its row, slot L − 1 in the PAPA layout): `fn(layer, probs,
# token_mask)` returns probabilities of the shape of `probs` [batch, heads, L, L], rows of padded queries all zero.
# The check compares it with the reference on one batch, then measures what it costs the hidden states beside
# PAPA's average and uniform attention. **Predict first:** which of the three moves them the most?

# %%
def my_intervention(layer, probs, token_mask):
    raise NotImplementedError("exercise 5")


# %%
print(check_intervention(my_intervention, net, whole_layout, averages))
