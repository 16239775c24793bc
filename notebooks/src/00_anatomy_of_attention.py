# %% [markdown]
# # 0. Anatomy of attention: what do heads do, and how much do they depend on the input?
#
# The starting point for teaching with this repository. On a small pretrained encoder that runs offline on a
# laptop, we look at attention the way the attention-analysis literature does (single inputs, per-head
# statistics), then ask PAPA's question: **how input-dependent is each head, and what happens when it is
# replaced by its average?** Every computation lives in `papa_utils.head_stats` (tested); this notebook
# narrates and plots. Figures go to `figures/` in the run folder, like the other notebooks'.
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

# %% parameters
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

from papa_utils import describe, get_task
from papa_utils.backbones import cached_model, example_attention
from papa_utils.device import inputs_on, model_device
from papa_utils.exercises import check_entropy, check_prediction, check_score, check_substitute
from papa_utils.figures import plot_average_vs_input, plot_head_map, plot_one_input, save_figure
from papa_utils.head_stats import (PATTERNS, attention_row_checks, constant_patterns, head_scores, head_statistics,
                                   heads_of_layer, hidden_state_change, papa_substitute, ranking_from_scores,
                                   recompute_attention)
from papa_utils.packing import backbone_batches
from papa_utils.runs import figures_dir, notebook_run
from papa_utils.steps import average_attention, encoded, task_data

profile, run_dir = notebook_run(profile, models, tasks, ranking, passes, run_dir)
model_name = model or profile.models[0]
task = task or ("mrpc" if "mrpc" in profile.tasks else profile.tasks[0])
spec = get_task(task)  # an unknown task fails here, listing the known ones
net, tokenizer = cached_model(model_name)  # an unknown model fails here, listing the offline ones
info = describe(net)
length = profile.length(task)
corpus = encoded(model_name, task_data(task, "train", examples), length)
figures = figures_dir(run_dir)
print(f"{model_name}: {info['layers']} layers x {info['heads']} heads, hidden size {info['hidden']}; task {task}, "
      f"L = {length}, corpus of {len(corpus)} training examples")

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
fig

# %% [markdown]
# ## 3. Per-head statistics over a small corpus
# Averaged over every real query row of the corpus: the entropy of a row (uniform attention over the n real
# tokens has the maximum, log n), the attention mass on `[CLS]`, on separators and on punctuation, and on the
# tokens at offsets −1, 0, +1 (in real-token order). Statistics over a corpus run on the real tokens only
# (packed passes, `papa_utils.packing`): the padding of the layout changes none of them.

# %%
stats = head_statistics(net, tokenizer, backbone_batches(corpus, 32, profile.passes))
maps = ["entropy", "mass_cls", "mass_sep", "mass_punctuation", "offset_-1", "offset_+0", "offset_+1"]
fig, axes = plt.subplots(len(maps), 1, figsize=(6.3, len(maps) * (0.3 * info["layers"] + 0.6)))
for ax, name in zip(axes, maps):
    title = name if name != "entropy" else f"entropy (uniform over the real tokens: {stats['uniform_entropy'].mean():.2f})"
    plot_head_map(stats[name], title=title, ax=ax, vmin=0)
fig.tight_layout()
save_figure(fig, figures / f"head_statistics_{model_name.replace('/', '--')}_{task}")
fig

# %% [markdown]
# The heads these maps single out, on the input of section 2: the one with the most mass on the previous
# token, on the next token, on separators, and the one with the highest entropy.

# %%
def strongest(values):
    i = int(values.flatten().argmax())
    return i // info["heads"], i % info["heads"]


picked = {name: strongest(stats[name]) for name in ("offset_-1", "offset_+1", "mass_sep", "entropy")}
print(picked)
plot_one_input(attention, tokens, list(picked.values()), title=" / ".join(picked))

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
fig = plot_average_vs_input(substitute, attention, *heads[2], title=f"{model_name} {task}: layer {heads[2][0]} head {heads[2][1]}")
save_figure(fig, figures / f"average_vs_input_{model_name.replace('/', '--')}_{task}")
fig

# %% [markdown]
# ## 5. How input-dependent is each head?
# The **input-dependence score** of a head is the Jensen–Shannon divergence (natural log, between 0 and
# log 2 ≈ 0.69) between its attention row on an input and the substitute's row, averaged over every real query
# row of every example. A head that always equals its average scores 0. The **variance** score beside it is the
# mean squared distance of those rows. Low scores: heads that PAPA can replace at little cost, if the score is
# right (notebook 6 tests that against the paper's trained gates).

# %%
scores = head_scores(net, averages, backbone_batches(corpus, 32, profile.passes))
fig, axes = plt.subplots(2, 1, figsize=(6.3, 2 * (0.3 * info["layers"] + 0.8)))
plot_head_map(scores["input_dependence"], title="input dependence (JS divergence from the substitute)", ax=axes[0])
plot_head_map(scores["variance"], title="variance around the average", ax=axes[1], fmt=".3f")
fig.tight_layout()
save_figure(fig, figures / f"input_dependence_{model_name.replace('/', '--')}_{task}")
ranking = ranking_from_scores(scores["input_dependence"])
print("least input-dependent heads (replaced first):", ranking[:5])
print("most input-dependent heads:", ranking[-5:])
fig

# %% [markdown]
# ## 6. Intervention: replace heads and watch the hidden states
# Replace one head (the least and the most input-dependent), one layer, then every head, with its average and
# with the alternatives a constant can be: uniform over the real tokens, the previous slot, `[CLS]` only, the
# token itself. The number is the mean relative change of the last layer's hidden states over real tokens,
# ‖h′ − h‖ / ‖h‖ (0 = nothing changed). What it costs a task probe is what notebooks 2 and 3 measure.

# %%
scopes = {f"head {ranking[0]} (least dependent)": [ranking[0]], f"head {ranking[-1]} (most dependent)": [ranking[-1]],
          "layer 0": heads_of_layer(net, 0), "all heads": "all"}
table = {kind: {scope: hidden_state_change(net, constant_patterns(kind, averages), replaced,
                                           backbone_batches(corpus, 32, profile.passes))
                for scope, replaced in scopes.items()} for kind in PATTERNS}
pd.DataFrame(table).T.round(3)

# %% [markdown]
# ## 7. Exercises
# Each exercise is a function to write: it ships unsolved (it raises `NotImplementedError`), and the cell after it
# checks your answer against `papa_utils` and says "correct", "not yet right" (with how far off) or "not solved
# yet". The checks never stop the notebook. Reference solutions are in `papa_utils/solutions.py`: look there after
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
# **Exercise 4: predict which heads are most replaceable.** Before looking at section 5's ranking, use only the
# statistics of section 3 (`stats`: entropy, mass on `[CLS]` / `[SEP]`, offsets; each [layers, heads]) to pick the
# 10% of heads you expect to depend least on their input, as a list of (layer, head). The check passes when your
# heads are, on average, less input-dependent than the average head (better than chance), and counts how many of
# them the score puts in its own first 10%. One hypothesis to start from: heads that park their attention on a
# separator look the same on every input.

# %%
def my_prediction(stats, n):
    raise NotImplementedError("exercise 4")


# %%
print(check_prediction(my_prediction, stats, scores["input_dependence"], max(1, len(ranking) // 10)))
