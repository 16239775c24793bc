"""Results in words and tables for readers: Table 1 and the other result tables in Markdown and LaTeX, and the
claims' verdicts as sentences (``claim_statements``, ``findings``), each made from the numbers it reports
(``statistics``, ``verdicts``), never written by hand.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..settings.profiles import PROFILES
from .statistics import undefined
from .verdicts import by_share


def curve_markdown(summary: pd.DataFrame) -> str:
    """The learning curve (``curve_summary``) as a Markdown table, one row per task x training size."""
    lines = ["| model | task | metric | training examples | trivial | attention-free | baseline | PAPA | relative drop "
             "| learned signal lost |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary.sort_values(["task", "train_examples"]).itertuples():
        lines.append(f"| {r.model} | {r.task} | {r.metric} | {r.train_examples} | {r.trivial:.1f} | "
                     f"{r.attention_free:.1f} | {r.baseline:.1f} | {r.PAPA:.1f} | {_pct(r.relative_drop)} | "
                     f"{_pct(r.learned_lost)} |")
    return "\n".join(lines) + "\n"


def curve_drops_markdown(summary: pd.DataFrame, left_out: dict | None = None) -> str:
    """The learning curve (``curve_summary``) in short: per model x task, PAPA's relative drop at each training
    size with the baseline beside it. A drop is read only where the cell carries signal in the run's claims (not
    in `left_out`, claims.json's cells whose baseline does not clear its references by more than its noise at the
    full training size, on the same dev set) and, at this size, the baseline beats both the trivial predictor and
    the attention-free probe; elsewhere "—" and the reason in a footnote mark."""
    left_out = left_out or {}
    sizes = sorted(summary.train_examples.unique())
    lines = ["| model | task | " + " | ".join(f"{n:,} examples" for n in sizes) + " |", "|---|---|" + "---|" * len(sizes)]
    for (model, task), part in summary.groupby(["model", "task"], sort=True):
        cells = []
        for n in sizes:
            row = part[part.train_examples == n]
            if not len(row):
                cells.append("")
                continue
            r = row.iloc[0]
            references = [v for v in (r.trivial, r.attention_free) if not np.isnan(v)]
            reference = max(references, default=np.nan)
            if f"{model} {task}" in left_out:
                cells.append(f"— (baseline {r.baseline:.1f})¹")
            elif not references:
                cells.append(f"— (baseline {r.baseline:.1f}, no reference)")
            elif not r.baseline > reference:
                cells.append(f"— (baseline {r.baseline:.1f} ≤ {reference:.1f})²")
            else:
                cells.append(f"{_pct(r.relative_drop)} (baseline {r.baseline:.1f})")
        lines.append(f"| {model} | {task} | " + " | ".join(cells) + " |")
    notes = {"¹": "¹ left out of the claims: at the full training size its baseline does not clear its references "
                  "by more than its noise.",
             "²": "² at this size the baseline does not beat a reference (the trivial predictor or the attention-free "
                  "probe)."}
    used = [note for mark, note in notes.items() if any(line.count(f"){mark}") for line in lines[2:])]
    return "\n".join(lines + ([""] + [" ".join(used)] if used else [])) + "\n"


def _pct(value) -> str:
    return "undefined" if value is None or np.isnan(value) else f"{100 * value:.1f}%"


def _pct_ci(value, low, high) -> str:
    """'12.3% [4.5, 20.1]' (the CI left out where undefined)."""
    if value is None or np.isnan(value) or np.isnan(low):
        return _pct(value)
    return f"{100 * value:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"


def _one_class(seeds) -> str:
    return f" (one class on {int(seeds)} seed{'s' * (int(seeds) != 1)})" if seeds and seeds > 0 else ""


def protocol_markdown(table: pd.DataFrame) -> str:
    """One line per task: the training and dev examples and L every model got, or each model's where they differ."""
    lines = []
    for task, part in table[table.headline].groupby("task", sort=False):
        said = {f"{int(r.train_examples)} training, {int(r.dev_examples)} dev examples, L {int(r.L)}"
                for r in part.itertuples() if not undefined(r.train_examples)}
        if len(said) == 1:
            lines.append(f"- {task}: {said.pop()}, for every model")
        elif said:
            lines.append(f"- {task}: **the models got different protocols**: " + "; ".join(
                f"{r.model} {int(r.train_examples)} training, {int(r.dev_examples)} dev, L {int(r.L)}"
                for r in part.itertuples()))
    return "\n".join(lines) + ("\n" if lines else "")


def table1_markdown(table: pd.DataFrame) -> str:
    """Table 1 as Markdown: the protocol of each task; baseline and PAPA (mean ± std over seeds), the trivial and
    attention-free references on the same dev data, the paper's relative drop and the share of the learned signal
    lost with their 95% bootstrap CIs, the share of the contextual signal lost, and whether the cell is in the
    claims; the averages are over the cells in the claims, and the cells left out follow with the reason."""
    lines = [protocol_markdown(table).rstrip(), "",
             "| model | task | metric | trivial | attention-free | baseline | PAPA (all heads constant) | relative drop "
             "| learned signal lost | contextual signal lost | in the claims |", "|---" * 11 + "|"]
    for r in table.itertuples():
        contextual = _pct(r.contextual_lost) if r.contextual_note == "" else r.contextual_note
        free = ("–" if np.isnan(r.attention_free) else
                f"{r.attention_free:.1f} ± {r.attention_free_std:.1f}{_one_class(r.attention_free_degenerate)}")
        trivial = "–" if np.isnan(r.trivial) else f"{r.trivial:.1f}"
        claims = "yes" if r.in_claims else "no" if r.headline else "no (secondary metric)"
        lines.append(f"| {r.model} | {r.task} | {r.metric} | {trivial} | {free} | {r.baseline:.1f} ± "
                     f"{r.baseline_std:.1f}{_one_class(r.baseline_degenerate)} | {r.papa:.1f} ± {r.papa_std:.1f}"
                     f"{_one_class(r.papa_degenerate)} | "
                     f"{_pct_ci(r.relative_drop, r.relative_drop_low, r.relative_drop_high)} | "
                     f"{_pct_ci(r.learned_lost, r.learned_lost_low, r.learned_lost_high)} | {contextual} | {claims} |")
    kept = table[table.in_claims]
    lines.append(f"| **average over the cells in the claims** | | | | | | | {_mean_note(kept.relative_drop)} | "
                 f"{_mean_note(kept.learned_lost)} | {_mean_note(kept.contextual_lost)} | {len(kept)} cells |")
    left = table[table.headline & ~table.in_claims]
    if len(left):
        lines += ["", "Left out of the claims (a baseline that does not clear its references by more than its own "
                      "noise has nothing PAPA could be seen to lose):"]
        lines += [f"- {r.model} {r.task}: {r.signal_note}" for r in left.itertuples()]
    return "\n".join(lines) + "\n"


def _mean_note(values: pd.Series) -> str:
    """'**x%** over n' (and how many are undefined)."""
    defined = values.dropna()
    if not len(defined):
        return "undefined"
    undefined = len(values) - len(defined)
    return f"**{_pct(defined.mean())}** over {len(defined)}" + (f" ({undefined} undefined)" if undefined else "")


def table1_latex(table: pd.DataFrame) -> str:
    def pct(value):
        return "--" if undefined(value) else f"{100 * value:.1f}\\%"

    def num(value):
        return "--" if np.isnan(value) else f"{value:.1f}"

    rows = [r"\begin{tabular}{lllrrrrrrrl}", r"\toprule",
            r"model & task & metric & trivial & attn.-free & baseline & PAPA & rel.\ drop & learned lost & "
            r"context lost & in claims \\", r"\midrule"]
    for r in table.itertuples():
        rows.append(f"{r.model} & {r.task} & {r.metric.replace('_', ' ')} & {num(r.trivial)} & "
                    f"{num(r.attention_free)} & {r.baseline:.1f} & {r.papa:.1f} & "
                    f"{_pct_ci(r.relative_drop, r.relative_drop_low, r.relative_drop_high).replace('%', chr(92) + '%')} & "
                    f"{_pct_ci(r.learned_lost, r.learned_lost_low, r.learned_lost_high).replace('%', chr(92) + '%')} & "
                    f"{pct(r.contextual_lost)} & {'yes' if r.in_claims else 'no'} \\\\")
    kept = table[table.in_claims]
    mean = lambda v: v.dropna().mean() if v.notna().any() else np.nan  # noqa: E731
    rows += [r"\midrule", f"average (cells in the claims) & & & & & & & {pct(mean(kept.relative_drop))} & "
             f"{pct(mean(kept.learned_lost))} & {pct(mean(kept.contextual_lost))} & {len(kept)} \\\\",
             r"\bottomrule", r"\end{tabular}"]
    return "\n".join(rows) + "\n"


def half_heads_markdown(table: pd.DataFrame) -> str:
    """``half_heads_by_ranking`` as a Markdown table: one row per ranking (with its seeds; the run's own ranking
    marked), the pooled verdict and each model's."""
    if not len(table):
        return "No ranking was compared with the run's own.\n"
    models = [m for m in dict.fromkeys(table.model) if m != "all models"]
    lines = ["| half of the heads chosen by | seeds | all models | " + " | ".join(models) + " |",
             "|---|---|---|" + "---|" * len(models)]
    for ranking, part in table.groupby("ranking", sort=False):
        cells = []
        for model in ["all models", *models]:
            r = part[part.model == model].iloc[0]
            ci = "" if undefined(r.ci_low) else f" [{100 * r.ci_low:.1f}, {100 * r.ci_high:.1f}]"
            value = "undefined" if undefined(r.relative_drop) else f"{100 * r.relative_drop:.1f}%{ci}"
            cells.append(f"{value}, {_cells(int(r.cells))}, **{r.verdict}**")
        label = ranking.replace("_", " ") + (" (the run's own: claim 2)" if part["main"].iloc[0] else "")
        lines.append(f"| {label} | {part.seeds.iloc[0]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def ranking_markdown(verdict: pd.DataFrame, agreement: pd.DataFrame) -> str:
    """The ranking comparison for the README: each ranking's verdict against the gates, then its agreement
    with the gates and its cost, averaged per model."""
    lines = ["| ranking | partial points | mean difference to the gates (metric points, 95% CI) | "
             "as good as the gates (within their seed spread) |", "|---|---|---|---|"]
    for r in verdict.itertuples():
        lines.append(f"| {r.ranking} | {r.points} | {r.mean_difference:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}] | "
                     f"{r.as_good_as_gates} of {r.points} ({100 * r.share_as_good:.0f}%) |")
    lines += ["", "| model | ranking | Spearman with the gates (mean over tasks; min to max) | first halves shared | "
              "seconds (this ranking / the gates), per task |", "|---|---|---|---|---|"]
    for (model, ranking), part in agreement.groupby(["model", "ranking"], sort=False):
        lines.append(f"| {model} | {ranking} | {part.spearman.mean():+.2f} ({part.spearman.min():+.2f} to "
                     f"{part.spearman.max():+.2f}) | {100 * part.first_half_overlap.mean():.0f}% | "
                     f"{part.seconds.mean():.1f} / {part.gates_seconds.mean():.1f} |")
    return "\n".join(lines) + "\n"


def probe_strength_sentence(result: dict, seeds) -> str:
    """``probe_strength`` in words."""
    if not result["cells"]:
        return "No learning-curve cell carries signal at every size, so none says whether a stronger probe loses more."
    said = (f"**Does a stronger probe of the same model lose more?** Across the training sizes, the Spearman "
            f"correlation of baseline and relative drop is positive in {result['positive']} of {len(result['cells'])} "
            f"cells (mean {result['mean_spearman']:+.2f}: " + ", ".join(f"{c} {v:+.1f}" for c, v in result["cells"].items())
            + f"); seed{'s' * (len(seeds) != 1)} {', '.join(map(str, seeds))}")
    moved = result.get("moved") or {}
    if not moved:
        return said + ", no interval."
    sizes = {(c["from"], c["to"]) for c in result["change"].values()}
    span = "from the smallest to the largest training size" if len(sizes) > 1 else \
        "from {:,} to {:,} training examples".format(*sizes.pop())

    def part(where, verb):
        cells = [f"{c} {100 * result['change'][c]['change']:+.1f} [{100 * result['change'][c]['ci_low']:+.1f}, "
                 f"{100 * result['change'][c]['ci_high']:+.1f}]" for c in moved.get(where, [])]
        return f"{verb} in {len(cells)} ({', '.join(cells)})" if cells else f"{verb} in none"

    counted = sum(map(len, moved.values()))
    return (said + f". {span[0].upper()}{span[1:]}, the relative drop (its change in percentage points, with a 95% "
            f"interval over the seeds) {part('grows', 'grows')}, {part('falls', 'falls')} and moves less than "
            f"the seeds' noise in {len(moved.get('within noise', []))} of {counted} cells.")


def _ci(c: dict) -> str:
    if undefined(c["value"]):
        return "undefined"
    return f"{c['value']:+.2f}" + ("" if undefined(c["ci_low"]) else f" [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}]")


def _average(a: dict) -> str:
    if not a["points"]:
        return "undefined"
    ci = "" if undefined(a["ci_low"]) else f" [{100 * a['ci_low']:.1f}, {100 * a['ci_high']:.1f}]"
    left = f"; {a['undefined_points']} undefined" if a["undefined_points"] else ""
    return f"{100 * a['value']:.1f}%{ci} over {a['points']} cell{'s' * (a['points'] != 1)}{left}"


def _estimate(a: dict) -> str:
    """An average with its interval, without the count of cells (the sentence gives it)."""
    return _average(a).split(" over ")[0]


def _share_ci(s: dict) -> str:
    if undefined(s.get("value")):
        return "undefined"
    return f"{s['value']:.2f}" + ("" if undefined(s.get("ci_low")) else f" [{s['ci_low']:.2f}, {s['ci_high']:.2f}]")


def _verdict(block: dict) -> dict:
    return block.get("verdict", {"verdict": "undecided", "reason": ""})


def _per_model(block: dict) -> str:
    return "; ".join(f"{m} " + (f"{_average(v['relative_drop'])}, " if v["relative_drop"]["points"] else "")
                     + f"**{_verdict(v)['verdict']}**" for m, v in block.get("per_model", {}).items())


def claim_statements(claims: dict) -> dict:
    """One sentence per claim, measured, with its verdict and rule, from ``check_claims``'s output: what notebook 4
    prints and what the README's results table shows, so the two cannot disagree. Per model first."""
    c = claims
    a = c["all_heads"]
    drivers = ", ".join(f"{m} {100 * v:.0f}%" for m, v in sorted(a.get("share_of_pooled_drop", {}).items(),
                                                                     key=lambda kv: -kv[1]))
    shares = a.get("share_of_pooled_drop", {})
    drivers = drivers if len(shares) > 1 and min(shares.values()) >= 0 else ""  # parts only where each is a part
    out = {"all_heads": (f"Per model: {_per_model(a)}. Pooled **{_verdict(a)['verdict']}** ({_verdict(a)['reason']}): "
                         f"relative drop {_average(a['relative_drop'])}"
                         + (f" (parts of the summed drop: {drivers})" if drivers else "")
                         + f"; share of the learned signal lost {_average(a['learned_signal_lost'])}")}
    h = c["half_heads"]
    sweep = h.get("sweep", {})
    shares = "; ".join(f"at {label}: " + ", ".join(f"{m} {_share_ci(v['share_of_full_loss'])}"
                                                    for m, v in point["per_model"].items())
                       for label, point in ((k, sweep[k]) for k in by_share(sweep)))
    out["half_heads"] = (f"On the {_cells(len(h.get('cells', [])))} where full PAPA loses measurably. Per model: "
                         f"{_per_model(h)}. Pooled **{_verdict(h)['verdict']}** ({_verdict(h)['reason']}): relative drop "
                         f"{_average(h['relative_drop'])}"
                         + (f"; {_cells(h['gains'])} gain{'s' * (h['gains'] == 1)}" if "gains" in h else "")
                         + (f". Share of the full-PAPA loss already lost {shares}" if shares else ""))
    w, r = c["strength_model_level"], c["pooled_strength_correlation"]
    per_task = ", ".join(f"{t} {v['spearman']:+.2f}" for t, v in w["tasks"].items() if v["spearman"] is not None)
    ci = ("" if undefined(w.get("ci_low")) else
          f"; bootstrap 95% interval of the mean [{w['ci_low']:+.2f}, {w['ci_high']:+.2f}]")
    ctx = c.get("strength_on_contextual_signal")
    on_context = ("" if not ctx or not ctx["tasks_measured"] else
                  f"; on the share of the contextual signal lost instead: mean Spearman {ctx['mean_spearman']:+.2f} "
                  f"over {ctx['tasks_measured']} tasks, p = {ctx['p_greater']:.3f}, **{_verdict(ctx)['verdict']}**")
    out["strength"] = (f"**{_verdict(w)['verdict']}** ({_verdict(w)['reason']}{ci})"
                       + (f"; Spearman per task: {per_task}" if per_task else "") + on_context
                       + (f"; pooled over all {r['points']} cells (mixed metrics and dev sets): Pearson "
                          f"{_ci(r['pearson'])}, Spearman {_ci(r['spearman'])}" if r["points"] > 2 else ""))
    return out


def _is(verdict: str) -> str:
    """A verdict as a verb phrase: "**holds**", "**fails**", "is **undecided**", "is **uninformative**"."""
    return f"**{verdict}**" if verdict in ("holds", "fails") else f"is **{verdict}**"


def _cells(n: int) -> str:
    return f"{n} cell{'s' * (n != 1)}"


def _carrying(block: dict) -> str:
    """"N cells that carry signal", for the cells an average of `block` is over."""
    n = block["relative_drop"]["points"]
    return f"{_cells(n)} that carr{'ies' if n == 1 else 'y'} signal"


def _models_with(block: dict, verdict: str) -> list:
    return [m for m, v in block.get("per_model", {}).items() if _verdict(v)["verdict"] == verdict]


def _names(items) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1] if items else "none"


def _most_on(counts: pd.Series) -> str:
    """" (the most, N, on ner)" from counts per task, every task that ties for the most named."""
    top = sorted(t for t, n in counts.items() if n == counts.max())
    return f" (the most, {counts.max()}{' each' if len(top) > 1 else ''}, on {_names(top)})"


def findings(claims: dict, convergence: pd.DataFrame | None = None) -> str:
    """The README's "What it says" and "Caveats" paragraphs for a published run, generated from its claims.json
    (and convergence.csv): every number and every verdict in them is read from those files."""
    a, h, w = claims["all_heads"], claims["half_heads"], claims["strength_model_level"]
    upper = 100 * claims["thresholds"]["about_paper_upper"]
    paper = 100 * claims["paper_all_heads_average_relative_drop"]
    measured = {m: v for m, v in a["per_model"].items() if v["relative_drop"]["points"]}
    shares = a.get("share_of_pooled_drop", {})
    top = max(shares.items(), key=lambda kv: kv[1], default=None) if len(shares) > 1 and min(shares.values()) >= 0 \
        else None  # which model makes the summed drop, where every model's part of it is a part
    if not a["relative_drop"]["points"]:
        said = [f"**What it says.** With every head constant, no cell carries signal, so claim 1 "
                f"{_is(_verdict(a)['verdict'])}."]
    elif len(measured) > 1:  # the models first: the pooled number says which of them drive it
        said = [f"**What it says.** With every head constant, the average relative drop is not one number: "
                + ", ".join(f"{m} {_average(v['relative_drop'])}" for m, v in measured.items())
                + f". Pooled over the {_carrying(a)} it is {_estimate(a['relative_drop'])}"
                + (f", and {top[0]} makes {100 * top[1]:.0f}% of it" if top else "")
                + f"; the paper reports {paper:.0f}%."]
    else:
        said = [f"**What it says.** With every head constant, the average relative drop over the {_carrying(a)} is "
                f"{_estimate(a['relative_drop'])}; the paper reports {paper:.0f}%."]
    if a["relative_drop"]["points"]:
        holds, undecided, fails = ([m for m in _models_with(a, v) if m in measured]  # models with a cell only
                                   for v in ("holds", "undecided", "fails"))
        per_model = [f"{verb} for {_names(ms)}" for verb, ms in (("holds", holds), ("is undecided", undecided),
                                                                  ("fails", fails)) if ms]
        said.append(f"Read as \"about {paper:.0f}% or less\" (the whole 95% interval at most {upper:.0f}%), claim 1 "
                    + (", ".join(per_model) + f"; pooled it {_is(_verdict(a)['verdict'])}" if len(measured) > 1
                       else f"{_is(_verdict(a)['verdict'])}") + ".")
    sweep = h.get("sweep", {})
    uninformed = _models_with(h, "uninformative")
    if h.get("cells"):
        half = sweep.get("1/2", {}).get("per_model", {})
        parts = ", ".join(f"{m} {_share_ci(v['share_of_full_loss'])}" for m, v in half.items())
        said.append(f"With half of the heads constant, on the {_cells(len(h['cells']))} where full PAPA loses "
                    f"measurably, the average relative drop is {_estimate(h['relative_drop'])} and claim 2 "
                    f"{_is(_verdict(h)['verdict'])} ({_verdict(h)['reason']})"
                    + (f"; the share of the full-PAPA loss already lost at half is {parts}" if parts else "")
                    + (f"; {_names(uninformed)} lose{'s' * (len(uninformed) == 1)} nothing measurable with every head "
                       f"constant, so half of the heads cannot test the claim there" if uninformed else "") + ".")
        later = [label for label in by_share(sweep) if label != "1/2"]
        if later:
            said.append("Further along the paper's sweep the share of the full-PAPA loss is " + "; ".join(
                f"at {label}: " + ", ".join(f"{m} {_share_ci(v['share_of_full_loss'])}"
                                            for m, v in sweep[label]["per_model"].items()) for label in later) + ".")
    else:
        said.append(f"Claim 2 {_is(_verdict(h)['verdict'])}: {_verdict(h)['reason']}.")
    if not w["tasks_measured"]:
        said.append(f"Claim 3 (better models lose more) cannot be tested here: {_verdict(w)['reason']}.")
    else:
        ctx = claims.get("strength_on_contextual_signal") or {}
        said.append(f"Claim 3 (better models lose more) {_is(_verdict(w)['verdict'])}: "
                    f"{_verdict(w)['reason']}"
                    + (f". Measured as the share of the contextual signal lost, which takes each model's headroom "
                       f"over the attention-free probe into account, the mean Spearman is {ctx['mean_spearman']:+.2f} "
                       f"(p = {ctx['p_greater']:.3f})" if ctx.get("tasks_measured") else "") + ".")
    cells = claims.get("cells", {})
    costly = sorted(((k, v) for k, v in cells.items() if v.get("in_claims") and not undefined(v.get("relative_drop_low"))
                     and v["relative_drop_low"] > 0), key=lambda kv: -kv[1]["relative_drop"])[:3]
    if costly:
        said.append("Constant attention costs the most on " + ", ".join(
            f"{k} ({100 * v['relative_drop']:.1f}%)" for k, v in costly) + ".")
    caveats = []
    sizes = {p.get("train_examples") for p in claims.get("protocol_per_task", {}).values() if "differs" not in p}
    models = list(claims.get("cells_per_model", {}))
    if models and not set(models) & set(PROFILES["paper"].models):
        caveats.append(f"the models ({_names(models)}) are not the paper's BERT, RoBERTa and DeBERTa (base and "
                       f"large)")
    if sizes - {None}:
        caveats.append(f"the probe trains on at most {max(sizes - {None}):,} examples per task (the paper: whole "
                       f"training splits)")
    if claims.get("left_out"):
        caveats.append(f"{_cells(len(claims['left_out']))} {'are' if len(claims['left_out']) != 1 else 'is'} left out "
                       f"because {'their baselines do' if len(claims['left_out']) != 1 else 'its baseline does'} not "
                       f"clear {'their' if len(claims['left_out']) != 1 else 'its'} references by more than the noise: "
                       f"{', '.join(claims['left_out'])}")
    if convergence is not None and len(convergence) and "tail_slope" in convergence:
        moving = convergence[~convergence.converged.astype(bool)]
        caveats.append(f"{len(moving)} of {len(convergence)} probe curves had not ended flat by the convergence check"
                       + (_most_on(moving.task.value_counts()) if len(moving) else ""))
    text = " ".join(said)
    if caveats:
        text += "\n\n**Caveats.** " + "; ".join(c[0].upper() + c[1:] if i == 0 else c for i, c in enumerate(caveats)) + "."
    return text + "\n"
