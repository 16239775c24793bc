"""What a published run shows readers, made from its files: the index page of results/<profile>/, the README's
generated blocks (results, summary, findings) and the lines that account for the run's invocations.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from .statistics import curve_seed_drops, curve_summary, ranking_verdict, read_statistics, table1
from .rendering import curve_drops_markdown, curve_markdown, half_heads_markdown, ranking_markdown, table1_markdown
from ..settings.choices import SWEEP_FRACTIONS, default_executor
from ..settings.profiles import PROFILES, Profile, recorded_settings
from ..records.runs import RECOMPUTED, ROOT, covers, invocations_of
from .verdicts import FLAT_TAIL, probe_strength
from .rendering import claim_statements, findings, probe_strength_sentence



def _invocation_lines(run: dict) -> list[str]:
    """The run's wall time and memory over its invocations, and, when there were several, what each did."""
    invocations = invocations_of(run)
    if len(invocations) == 1:
        i = invocations[0]
        return [f"- **Wall time {_minutes(run['wall_seconds'])}** in one invocation at commit "
                f"`{i['git_commit'][:7]}`{_tree(i)}; peak resident memory "
                f"{run['peak_memory_gb']:.1f} GiB (the largest process){_memory(run.get('memory'))}. By notebook: "
                + ", ".join(f"{nb[:2]} {_minutes(t)}" for nb, t in i["notebook_seconds"].items()) + "."]
    recorded = [i for i in invocations if i.get("wall_seconds") is not None]
    over = (f"its {len(invocations)} invocations" if len(recorded) == len(invocations) else
            f"the {len(recorded)} of its {len(invocations)} invocations that recorded it")
    partial = "" if run.get("walls_recorded", True) else " (a lower bound: not every invocation's wall is known in full)"
    peaks = [i for i in invocations if i.get("peak_memory_gb") is not None]
    lines = [f"- **Wall time {_minutes(run['wall_seconds'])}**, summed over {over}{partial}; peak resident memory "
             f"{run['peak_memory_gb']:.1f} GiB (the largest process of "
             + ("any of them" if len(peaks) == len(invocations) else "those that recorded it") + ")"
             + _memory(run.get("memory"), len(invocations)) + "."]
    k = 0
    while k < len(invocations):  # invocations that recorded nothing but their commit, one line for a run of them
        unrecorded = 0
        while k + unrecorded < len(invocations) and invocations[k + unrecorded].get("wall_seconds") is None:
            unrecorded += 1
        if unrecorded > 1:
            group = invocations[k:k + unrecorded]
            lines.append(f"  {k + 1}-{k + unrecorded}. Commits " + ", ".join(f"`{str(i['git_commit'])[:7]}`" for i in group)
                         + ", notebooks " + ", ".join(dict.fromkeys(n[:2] for i in group for n in i.get("notebooks") or []))
                         + ": wall times and steps not recorded.")
            k += unrecorded
        else:
            lines.append(f"  {k + 1}. {_invocation_line(invocations[k])}")
            k += 1
    return lines


def _memory(memory: dict | None, invocations: int = 1) -> str:
    """The process tree's memory (``runs.run_totals``'s "memory") in words; "" where it was not sampled."""
    if not memory:
        return ""
    which = "" if memory.get("invocations", 1) == invocations else \
        f", in the {memory['invocations']} of its {invocations} invocations that sampled them,"
    return (f"; the run's processes{which} together held at most {memory['anonymous_gb']:.1f} GiB of anonymous "
            f"memory, and {memory['resident_gb']:.1f} GiB resident at their peak, {memory['file_backed_gb']:.1f} GiB "
            f"of it pages mapped from files (the feature cache, the weights, the libraries), which the kernel can "
            f"drop and read again")


def _code_lines(run: dict) -> list[str]:
    """Which numerical code computed the published run's steps (run.json's "step_code", written by publishing), in
    words, and how many of them no invocation of the run computed (copied in from another run folder); none for a
    run published before it was recorded."""
    codes = dict(run.get("step_code") or {})
    if not codes:
        return []
    total = sum(codes.values())
    invocations = invocations_of(run)
    known = invocations and all(i.get("steps") for i in invocations)
    computed = sum(i["steps"]["computed"] for i in invocations) if known else total
    copied = ([f"- {total - computed} of its {total} steps were computed by none of these invocations: they were copied "
               f"in from another run folder (their times count in the steps summed, not in the walls)."]
              if computed < total else [])
    return _code_line(codes) + copied


def _code_line(codes: dict) -> list[str]:
    """``_code_lines``' sentence on the codes (digest -> steps; "not recorded" for steps that name none)."""
    unknown = codes.pop("not recorded", 0)
    total = sum(codes.values()) + unknown
    what = ("(`papa_utils.records.runs.code_digest`: the modules that compute the numbers and the versions of the "
            "packages they use)")
    missing = (f"; {unknown} record{'s' * (unknown == 1)} no code (stored before steps recorded it, or damaged)"
               if unknown else "")
    if len(codes) == 1 and unknown:
        (code, n), = codes.items()
        return [f"- Numerical code: {n} of its {total} steps were computed by code digest `{code}` {what}{missing}."]
    if not codes:
        return [f"- Numerical code: none of its {total} steps records the code that computed it."]
    if len(codes) == 1:
        (code, n), = codes.items()
        return [f"- Numerical code: all {n} steps were computed by the same code, digest `{code}` {what}."]
    return [f"- Numerical code: its {total} steps were computed by {len(codes)} different codes {what}: "
            + ", ".join(f"`{code}` {n}" for code, n in codes.items()) + f"{missing}; its numbers mix them."]


def _tree(i: dict) -> str:
    """The state of an invocation's tree beside its commit ("" when clean)."""
    if i.get("dirty") is None:
        return " (whether the tree had uncommitted changes was not recorded)"
    return f" with uncommitted changes (diff sha256 `{i['diff_sha256'][:12]}`)" if i["dirty"] else ""


def _invocation_line(i: dict) -> str:
    """One invocation of a run, in words: commit, notebooks, wall, memory, steps computed and found done."""
    state = _tree(i)
    notebooks = i.get("notebooks") or []
    steps = i.get("steps")
    done = ("its steps were not recorded" if not steps else
            f"computed {steps['computed']} steps"
            + "".join(f" ({n} again: {RECOMPUTED[why]})" for why, n in steps["recomputed"].items())
            + (f" and found {steps['reused']} done" if steps.get("reused") is not None else ""))
    wall = "wall time not recorded" if i.get("wall_seconds") is None else _minutes(i["wall_seconds"])
    peak = "" if i.get("peak_memory_gb") is None else f", peak {i['peak_memory_gb']:.1f} GiB"
    if i.get("memory"):
        peak += f" ({i['memory']['anonymous_gb']:.1f} GiB anonymous across its processes)"
    return (f"Commit `{str(i['git_commit'])[:7]}`{state}, notebook{'s' * (len(notebooks) != 1)} "
            f"{', '.join(n[:2] for n in notebooks) or 'none'}: {wall}{peak}; {done}"
            + ("" if i.get("finished", True) else "; interrupted (its wall time runs to its last record: the "
                                                      "interruption, or its last finished notebook if it was killed)")
            + ".")


# notebooks that compute nothing unless the profile asks (the profile field, and what a profile without it does)
NOTEBOOK_ASKS = {"05_probe_strength": ("curve_models", "runs no learning curve"),
                 "06_gate_free_ranking": ("compare_rankings", "compares no ranking with its own")}


NOTEBOOK_TITLES = {
    "00_anatomy_of_attention": "Anatomy of attention: checks, head statistics and interventions on one model",
    "01_average_attention": "The constant (average) matrices of every model and task",
    "02_probe_baselines": "Probing baseline, full PAPA and their references",
    "03_partial_replacement": "Replacing some of the heads: the sweep",
    "04_model_strength": "Table 1 and the paper's claims",
    "05_probe_strength": "Learning curves: the loss against the probe's training size",
    "06_gate_free_ranking": "Head rankings compared with the gates",
}


TABLE_TITLES = {
    "probe_results.csv": "every probe result (tidy: model, task, replaced heads, seed, predictor, metric)",
    "convergence.csv": "whether each probe's dev curve ended flat",
    "table1.md": "Table 1 (Markdown)", "table1.tex": "Table 1 (LaTeX)",
    "claims.json": "the claims' estimates, intervals and verdicts",
    "learning_curves.csv": "learning-curve results", "ranking_comparison.csv": "the sweep under each head ranking",
    "ranking_agreement.csv": "each ranking's agreement with the gates, and its cost",
    "half_heads_by_ranking.csv": "claim 2 with the half of the heads each ranking picks",
    "ranking_stability.csv": "each ranking against itself on other data or seeds",
    "dev_statistics.npz": "per-example dev counts, for the paired bootstraps",
    "truncation.csv": "the share of inputs the layout cuts, per L", "run.json": "how the run was made",
}


FIGURE_TITLES = {  # by file-name prefix
    "one_input": "one input's attention in the PAPA layout (notebook 0)",
    "head_statistics": "head statistics: entropy, distance, input dependence (notebook 0)",
    "average_vs_input": "a head's average next to one input's attention (notebook 0)",
    "input_dependence": "input dependence of every head (notebook 0)",
    "average_attention": "constant matrices of a few heads next to one input (notebook 1)",
    "dev_curves": "probe dev curves per epoch (notebook 2)",
    "performance_vs_dynamic_heads": "the metric against the number of input-dependent heads (notebook 3)",
    "head_ranking": "what ranked the heads, for the first model and task (notebook 3)",
    "claims_1_and_2": "claims 1 and 2 per model: the relative drop with every head constant, and the share of it "
                      "already lost at each partial point, with their intervals and verdicts (notebook 4)",
    "relative_drop_vs_baseline": "relative drop against baseline strength: claim 3 (notebook 4)",
    "learning_curves": "learning curves (notebook 5)", "ranking_comparison": "the sweep under each ranking (notebook 6)",
}


def index_page(name: str, folder: Path, figures: list[str]) -> str:
    """results/<name>/README.md: the published run's notebooks, tables and figures, each linked with what it is
    (a hosting site shows this page when the folder is opened)."""
    lines = [f"# Published `{name}` run", "",
             "Generated by `make publish` from the files this page links; the repository's README reads the numbers.",
             "", "## Numbers", "", readme_block(name, folder=folder).rstrip(), "", "## Executed notebooks", ""]
    profile = json.loads((folder / "run.json").read_text())["profile"]
    for notebook in sorted((folder / "notebooks").glob("*.ipynb")):
        asks = NOTEBOOK_ASKS.get(notebook.stem)
        if asks and not profile.get(asks[0]):
            elsewhere = [p.parent.name for p in sorted(folder.parent.glob("*/run.json"))
                         if json.loads(p.read_text())["profile"].get(asks[0])
                         and (p.parent / "notebooks" / notebook.name).exists()]
            see = "; ".join(f"[the `{o}` run's copy](../{o}/notebooks/{notebook.name})" for o in elsewhere)
            lines.append(f"- {notebook.stem}: {NOTEBOOK_TITLES.get(notebook.stem, '')}: the `{name}` profile "
                         f"{asks[1]}, so [its copy](notebooks/{notebook.name}) only says why" + (f"; see {see}" if see else ""))
            continue
        lines.append(f"- [{notebook.stem}](notebooks/{notebook.name}): {NOTEBOOK_TITLES.get(notebook.stem, '')}")
    lines += ["", "## Tables", ""]
    for file in sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != "README.md"):
        lines.append(f"- [{file}]({file}): {TABLE_TITLES.get(file, '')}")
    lines += ["", "## Figures", ""]
    for png in (f for f in figures if f.endswith(".png")):
        stem = png[:-4]
        title = next((t for prefix, t in FIGURE_TITLES.items() if stem.startswith(prefix)), "")
        lines += [f"### {stem}", "", title, "", f"![{stem}](../../figures/{name}/{png})", ""]
    return "\n".join(lines).rstrip() + "\n"


def replaces_an_older_definition(run: dict, published: dict) -> bool:
    """A run of the profile exactly as it is defined now (every setting, its own head ranking and passes included)
    that covers every model, task and seed of the published run may replace a run made when the profile ranked heads
    another way or ran other backbone passes."""
    own = PROFILES.get(run["scope"]["profile"])
    return own is not None and recorded_settings(run["profile"]) == recorded_settings(asdict(own)) and covers(
        run["scope"], {**published, "ranking": own.ranking, "passes": own.passes})


# steps that not every run has, in the order the README names them
STEP_LABELS = (("head_scores", "head scores (input dependence, variance; with their stability subsets)"),
               ("ranking_comparison", "sweeps under the compared rankings"), ("learning_curve", "learning curve"))


def _batch_note(profile: Profile) -> str:
    """Where a profile's probe batch differs from the paper's, where the evidence for it is."""
    return "" if profile.probe_batch_size == 16 else (
        " (the paper's batch is 16; the larger one is a choice for speed, compared with batch 16 on the same "
        "features in docs/speed.md)")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def _command(name: str, run: dict) -> str:
    """The commands that made a published run (with what narrowed it, and its executor)."""
    p, scope = run["profile"], run["scope"]
    grid = PROFILES[name] if name in PROFILES else Profile(**p)  # the profile's whole grid, to tell a narrowed run
    full = {"models": grid.models, "tasks": grid.tasks}
    narrowed = "".join(f" {part.upper()}={','.join(scope[part])}" for part in ("models", "tasks")
                       if set(scope[part]) != set(full[part]))
    executor = run.get("executor", "inprocess")
    narrowed += f" EXECUTOR={executor}" if executor != default_executor(all_notebooks=True) else ""
    return f"`make figures PROFILE={name}{narrowed}` then `make publish RUN_DIR={run['run_dir']}`"


def _run_lines(name: str, run: dict) -> list[str]:
    """How a published run was made: the commands, commit and packages, wall and step times, memory."""
    steps = run["step_seconds"]
    command = _command(name, run)
    lines = [f"Produced by {command}, "
             f"with `PAPA_DATA_DIR={run['data_dir']}`, on {run['cpus']} CPU cores (torch {run['packages']['torch']}, "
             f"transformers {run['packages']['transformers']}).", "",
             *_invocation_lines(run), *_code_lines(run),
             *([_cells_line(run)] if run.get("cells") else []),
             f"- Summed over the grid: averages (the same pass also saves the baseline's training features) "
             f"{_minutes(steps['averages'])}, "
             + (f"head ranking (gates) {_minutes(steps['ranking'])}, " if steps["ranking"] else "")
             + f"other backbone feature "
             f"passes {_minutes(steps['feature_passes'])}, probe training (the paper's probe and the attention-free "
             f"one) {_minutes(steps['probe_training'])}"
             + "".join(f", {label} {_minutes(steps[key])}" for key, label in STEP_LABELS if steps.get(key)) + ".",
             f"- Baseline features saved on disk: {run['feature_cache_gb']['largest']:.1f} GiB at most, "
             f"{run['feature_cache_gb']['at_the_end']:.1f} GiB left at the end."]
    return lines


def readme_block(name: str, root: Path = ROOT, folder: Path | None = None) -> str:
    """The README's results block for results/<name>/ (or the published files in `folder`), generated from its
    run.json, probe_results.csv and claims (``claim_statements``, the same sentences notebook 4 prints)."""
    folder = folder or root / "results" / name
    run = json.loads((folder / "run.json").read_text())
    results = pd.read_csv(folder / "probe_results.csv")
    statistics = read_statistics(folder)
    p, scope = run["profile"], run["scope"]
    sized = Profile(**p)
    lines = _run_lines(name, run) + [
             "",
             f"One protocol for every model: per task the same training and dev examples (random subsets with a "
             f"fixed seed) and the same L, listed above Table 1; the constant matrices average "
             f"{_size_cell(sized, scope['models'][0], 'average_examples', scope['tasks'])} training examples; heads "
             f"ranked by {_ranking_label(sized)} on {_size_cell(sized, scope['models'][0], 'rank_examples', scope['tasks'])}; "
             f"probe {sized.epochs} epochs at lr {sized.probe_lr:g}, batch {sized.probe_batch_size} "
             f"({sized.lr_schedule} schedule){_batch_note(sized)}; seeds "
             f"{', '.join(map(str, sized.seeds))}; shares of the heads replaced "
             f"{', '.join(_share(f) for f in sized.sweep_fractions)}"
             + ("" if tuple(sized.sweep_fractions) == tuple(SWEEP_FRACTIONS) else
                f" (the paper's: {', '.join(_share(f) for f in SWEEP_FRACTIONS)})") + f"; {_precision(run)}."]
    if p.get("curve_models") and p.get("curve_tasks"):
        lines += ["", f"Learning curves (notebook 5): {', '.join(p['curve_models'])} on {', '.join(p['curve_tasks'])}, training sizes "
                      f"{', '.join(map(str, p['curve_sizes']))} (the whole split where smaller), seeds "
                      f"{', '.join(map(str, p['curve_seeds']))}, the dev sets above."]
    claims = json.loads((folder / "claims.json").read_text())
    said = claim_statements(claims)
    resampled = ("seeds and dev examples (paired bootstrap)" if statistics else
                 "seeds only: this run kept no per-example dev statistics, so the noise of the dev set is not in them")
    lines += ["", "### Table 1: probing baseline vs. all heads constant (mean ± std over seeds, points)", "",
              f"95% CIs on the relative drop and the learned-signal share resample {resampled}.", "",
              table1_markdown(table1(results, statistics)).rstrip()]
    convergence = _table(folder / "convergence.csv")
    if convergence is not None and len(convergence):
        lines += ["", convergence_line(convergence)]
    lines += ["", "### The paper's claims, with a verdict each", "",
              "| claim (Hassid et al. 2022) | paper | here |", "|---|---|---|",
              f"| 1. all heads constant | average relative drop 8% | {said['all_heads']} |",
              f"| 2. half of the heads constant | little or no drop, sometimes a gain | {said['half_heads']} |",
              f"| 3. better models lose more | the drop grows with the baseline | {said['strength']} |"]
    curve = _table(folder / "learning_curves.csv")
    if curve is not None and len(curve):
        lines += ["", "### How the verdict moves with the probe's training data (learning curve, notebook 5)", "",
                  curve_markdown(curve_summary(curve)).rstrip()]
    comparison = _table(folder / "ranking_comparison.csv")
    if comparison is not None and len(comparison):
        agreement = pd.read_csv(folder / "ranking_agreement.csv")
        compared = p.get("compare_fractions") or p.get("sweep_fractions", SWEEP_FRACTIONS)
        partial = ", ".join(_share(f) for f in compared if 0 < f < 1)
        lines += ["", "### Can a cheap statistic replace the gates? (notebook 6)", "",
                  f"Partial sweep (k = {partial} of the heads) under each ranking on "
                  f"{', '.join(p['compare_models'])}: deterministic rankings with seeds "
                  f"{', '.join(map(str, p['seeds']))}, {p['random_orders']} random order{'s' * (p['random_orders'] != 1)} with one seed each. A ranking is "
                  f"as good as the gates at a point when its mean is at least the gates' worst seed. Agreement and cost "
                  f"for every model × task of the run.", "",
                  ranking_markdown(ranking_verdict(comparison), agreement).rstrip()]
        lines += _half_heads_lines(folder)
    stability = _table(folder / "ranking_stability.csv")
    if stability is not None and len(stability):
        if "ranking" not in stability:  # made before other rankings than the gates had a stability
            stability.insert(0, "ranking", "gates")
        lines += ["", "### How stable the head ranking is (notebook 6)", "",
                  "Spearman correlation between a ranking and the same ranking made again (another seed; a disjoint "
                  "training subset of the same size); mean over tasks (min to max). A score has no seed.",
                  "", "| ranking | model | another seed | a disjoint training subset |", "|---|---|---|---|"]
        for (ranking, model), part in stability.groupby(["ranking", "model"], sort=False):
            cells = [part[part.compared_with == c].spearman for c in ("another seed", "disjoint subset")]
            lines.append(f"| {ranking} | {model} | " + " | ".join(
                f"{v.mean():+.2f} ({v.min():+.2f} to {v.max():+.2f})" if len(v) else "—" for v in cells) + " |")
    return "\n".join(lines) + "\n"


def convergence_line(convergence: pd.DataFrame) -> str:
    """How many probe curves ended flat (``tables.convergence_table``) and which did not, with their tail slopes."""
    if "tail_slope" not in convergence:  # a run made before the slope was kept: its last epoch's gain only
        return (f"Convergence (`convergence.csv`): this run kept only each curve's last-epoch gain, which a decaying "
                f"learning rate makes small whether or not the curve has converged; no check is reported.")
    moving = convergence[~convergence.converged.astype(bool)]
    return (f"Convergence (`convergence.csv`): {len(convergence) - len(moving)} of {len(convergence)} probe curves "
            f"(model × task × configuration, mean over seeds) ended flat: the slope of their last epochs' dev metric, "
            f"against the training done counted in epochs at the peak learning rate, is under {FLAT_TAIL:g} points "
            f"per epoch or within twice its standard error over seeds" + ("." if not len(moving) else "; still moving (points per epoch at the peak rate): " + ", ".join(
                f"{r.model} {r.task} {r.predictor} k={r.replaced_heads} ({r.tail_slope:+.1f})"
                for r in moving.itertuples()) + "."))


HALF_HEADS_INTRO = ("**Claim 2 with the half of the heads each ranking picks** (`half_heads_by_ranking.csv`): the average "
                    "relative drop at k = ½ with its 95% CI (the ranking's seeds and the dev examples, resampled paired "
                    "with the baseline on those seeds: a random order has one seed, so its interval has no seed noise), "
                    "over the cells where full PAPA loses measurably (as claim 2 itself), and its verdict; the paper picks with "
                    "the gates.")


def summary_block(name: str, root: Path = ROOT) -> str:
    """A short README block for a published run whose whole page is results/<name>/README.md: how it was made,
    claim 2 at the paper's sweep points when the run has them, the learning curve in short
    (``rendering.curve_drops_markdown``) and claim 2 under each ranking (``rendering.half_heads_markdown``), from
    the published files."""
    folder = root / "results" / name
    run = json.loads((folder / "run.json").read_text())
    p, steps = run["profile"], run["step_seconds"]
    command = _command(name, run)
    lines = [f"Produced by {command} ({run['cpus']} CPU cores); steps summed "
             f"{_minutes(sum(steps.values()))} ("
             + ", ".join(f"{key.replace('_', ' ')} {_minutes(v)}" for key, v in steps.items() if v) + ").", "",
             *_invocation_lines(run), *_code_lines(run)]
    claims = json.loads((folder / "claims.json").read_text())
    if any(label != "1/2" for label in claims["half_heads"].get("sweep", {})):
        said = claim_statements(claims)["half_heads"]
        lines += ["", f"**Claim 2 along the paper's sweep** (`claims.json`, the rule in "
                      f"[docs/method.md](docs/method.md#verdicts)): {said[0].lower()}{said[1:]}."]
    curve = _table(folder / "learning_curves.csv")
    if curve is not None and len(curve):
        left_out = claims.get("left_out", {})
        seeds = ", ".join(map(str, p["curve_seeds"]))
        seeds = f"means over seeds {seeds}" if len(p["curve_seeds"]) > 1 else f"seed {seeds}, no interval"
        lines += ["", f"**Learning curves** ({', '.join(p['curve_models'])} on {', '.join(p['curve_tasks'])}; "
                      f"{seeds}): PAPA's relative drop with every head constant, by the probe's training size.", "",
                  curve_drops_markdown(curve_summary(curve), left_out).rstrip(), "",
                  probe_strength_sentence(probe_strength(curve_summary(curve), left_out, curve_seed_drops(curve)),
                                          p["curve_seeds"])]
    return "\n".join(lines + _half_heads_lines(folder)) + "\n"


def _half_heads_lines(folder: Path) -> list[str]:
    """Claim 2 under each ranking (``rendering.half_heads_markdown``), when the run compared rankings."""
    by_ranking = _table(folder / "half_heads_by_ranking.csv")
    if by_ranking is None or not len(by_ranking):
        return []
    return ["", HALF_HEADS_INTRO, "", half_heads_markdown(by_ranking).rstrip()]


def _cells_line(run: dict) -> str:
    """How the cells' jobs ran (``executor.run_cells``), from run.json."""
    cells = run["cells"].values()
    seconds = [c["seconds"] or 0 for c in cells]
    hosts = sorted({c["host"] for c in cells if c.get("host")})
    devices = sorted({c["device"] for c in cells if c.get("device")})
    waited = invocations_of(run)[-1].get("cells_wall_seconds")
    return (f"- **Cells as jobs** (`EXECUTOR={run['executor']}`): {len(seconds)} cells, {_minutes(sum(seconds))} of "
            f"job time in all, the longest {_minutes(max(seconds))}, on {', '.join(hosts)} ({', '.join(devices)})"
            + (f"; this run waited {_minutes(waited)} for the cells it submitted, before the notebooks"
               if waited is not None else "") + ".")


def _share(fraction: float) -> str:
    return {0: "0", 1: "all", 0.5: "½", 0.875: "⅞", 0.9375: "15/16"}.get(round(fraction, 4), f"{fraction:g}")


def _precision(run: dict) -> str:
    """Which precision the backbone passes and the probe's products ran in: with "auto", each model's choice and
    the product timings behind it (``device.auto_precision``, recorded in run.json)."""
    chosen = run.get("precision_choice")
    if not chosen:
        return f"backbone in {run['profile']['precision']}"
    parts = [f"{m} {c['choice']} (bf16 products {c['bf16_seconds'] / c['fp32_seconds']:.2f}x the fp32 time)"
             for m, c in chosen.items()]
    return f"precision auto on {next(iter(chosen.values()))['processor']}: {', '.join(parts)}"


def _ranking_label(profile: Profile) -> str:
    if profile.ranking != "gates":
        return profile.ranking.replace("_", " ")
    return f"gates, {profile.rank_epochs} epoch{'s' if profile.rank_epochs > 1 else ''} at lr {profile.gate_lr or profile.probe_lr:g}"


def _size_cell(profile: Profile, model: str, name: str, tasks) -> str:
    """A size of one model: its usual value, and the tasks where it differs ("whole split" for None)."""
    show = lambda n: "whole split" if n is None else str(n)  # noqa: E731
    usual = profile.size(model, name)
    other = [f"{t} {show(profile.size(model, name, t))}" for t in tasks if profile.size(model, name, t) != usual]
    return show(usual) + (f" ({', '.join(other)})" if other else "")


def _table(path: Path):
    """A result table, or None when this run has none (a run made before that table existed, or a profile without
    that step, e.g. the paper's without a learning curve: an empty file)."""
    try:
        return pd.read_csv(path) if path.exists() else None
    except pd.errors.EmptyDataError:
        return None


def findings_block(name: str, root: Path = ROOT) -> str:
    """The README's "What it says" and "Caveats" paragraphs for results/<name>/ (``rendering.findings``), generated
    from its claims.json and convergence.csv, with the command that regenerates them."""
    folder = root / "results" / name
    text = findings(json.loads((folder / "claims.json").read_text()), _table(folder / "convergence.csv"))
    return (text.rstrip("\n") + f" Generated from `results/{name}/claims.json` by `make publish` (`.venv/bin/python -m "
                   f"papa_utils.reports.publish --readme {name}` regenerates it); the rules behind each verdict: "
                   f"[docs/method.md](docs/method.md#verdicts).\n")


BLOCKS = {"results": readme_block, "summary": summary_block, "findings": findings_block}  # README markers:
