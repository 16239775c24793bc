"""The named choices a run is made of: precisions, backbone passes, head rankings, the sweep's shares of heads,
the dry run's model ids and how cells run. Plain data without torch, so that profiles and publishing can name them
without loading a model; the modules that act on a choice import it from here."""
from __future__ import annotations

PRECISIONS = ("fp32", "bf16", "fp16")  # fp16: for GPUs without bf16 (V100, T4); sums and losses stay fp32
CHOICES = PRECISIONS + ("auto",)  # "auto": the faster of fp32 and bf16 on this machine (``device.auto_precision``)

PASSES = ("packed", "padded")  # real tokens only (``packing``), or the whole layout (the reference)

# how to order the heads for partial replacement: trained gates (the paper), the input-dependence score or
# the variance of a head's rows around its average (``head_stats``), or a random order
RANKINGS = ("gates", "input_dependence", "variance", "random")

SWEEP_FRACTIONS = (0, 1 / 2, 7 / 8, 15 / 16, 1)  # the paper's sweep over the share of heads replaced

# how a run's (model, task) cells run (``runner.executor``): inside the notebooks, each a process of its own on this
# machine, or each a Slurm job
EXECUTORS = ("inprocess", "local", "slurm")

# Tiny randomly initialised encoders of the paper's three families at two sizes each (the paper's grid: base and
# large of three families), for the `paper-dry` profile: built once into
# the local models folder (``models.models_dir``) and loaded from there like any Hub id found in it. Their numbers
# mean nothing; they exercise the paper profile's code path on a machine without a GPU or the Hub.
TINY_RANDOM = {"papa-dry/bert-tiny-random": "bert", "papa-dry/roberta-tiny-random": "roberta",
               "papa-dry/deberta-tiny-random": "deberta", "papa-dry/bert-small-random": "bert",
               "papa-dry/roberta-small-random": "roberta", "papa-dry/deberta-small-random": "deberta"}


def default_executor(all_notebooks: bool) -> str:
    """The executor of a run that asks for none: "local" when every notebook runs, so that each cell's steps run
    in a process of their own and none holds what an earlier cell left behind (the run's peak is then its largest
    cell's, docs/cpu_profile.md); with a subset of the notebooks, "inprocess", so that they compute only the steps
    they read."""
    return "local" if all_notebooks else "inprocess"


def check_passes(passes: str) -> str:
    if passes not in PASSES:
        raise ValueError(f"passes must be one of {', '.join(map(repr, PASSES))}, got {passes!r}")
    return passes


def replaced_counts(total_heads: int, fractions=SWEEP_FRACTIONS) -> list[int]:
    """Numbers of replaced heads for the sweep (BERT-base, 144 heads: 0, 72, 126, 135, 144)."""
    return sorted({int(round(f * total_heads)) for f in fractions})
