"""What a run covers and how big it is: the profiles (``PROFILES``, ``get_profile``). Plain data, no torch: the
runner, the notebooks and publishing all read them."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from .choices import CHOICES, RANKINGS, SWEEP_FRACTIONS, TINY_RANDOM, check_passes, replaced_counts
from .tasks import get_task

SIZE_FIELDS = ("average_examples", "train_examples", "dev_examples", "rank_examples")


@dataclass(frozen=True)
class Profile:
    """What one run covers and how big it is. Sizes are numbers of examples (None = the whole split)."""

    name: str
    models: tuple[str, ...]
    tasks: tuple[str, ...]
    seeds: tuple[int, ...] = (42,)
    average_examples: int | None = None  # training examples averaged into the constant matrices
    train_examples: int | None = None  # probe training subset
    dev_examples: int | None = None
    rank_examples: int | None = None  # training examples a head ranking is made from (gates or scores)
    rank_epochs: int = 1
    gate_lr: float | None = None  # the gates' own learning rate in the head ranking (None: `probe_lr`)
    epochs: int = 15
    probe_lr: float = 2e-5  # the paper's; a higher lr with fewer epochs where the learning curves allow it
    probe_batch_size: int = 16  # the paper's; a larger batch where a side-by-side shows the same results within seed
    # noise (`make bench`'s probe section), for speed: the probe's dense layer and AdamW are read once per step
    lr_schedule: str = "constant"  # the paper's; "linear" decays to 0 at the last step (``ProbeConfig``)
    length_override: int | None = None  # one L for every task (None: `task_lengths`, else each task's default)
    task_lengths: dict = field(default_factory=dict)  # task -> L (chosen from ``truncation_table`` and cost)
    protocol: str = "cached"  # probe protocol (ProbeConfig): "streaming" when features would not fit in memory
    precision: str = "auto"  # backbone passes: "fp32", "bf16", or "auto": the faster on this machine, per model
    # (``precision_of``; measured once, recorded in run.json)
    task_sizes: dict = field(default_factory=dict)  # task -> {size field: n}, e.g. a cap on a large dev split
    # (a task's sizes replace the defaults above). There is no per-model size or sweep: every model of a profile
    # gets the same examples, L, schedule and sweep, so that models are compared on one dev set per task
    # learning curves (notebook 5): baseline and full PAPA of these models at growing training sizes
    curve_models: tuple[str, ...] = ()
    curve_tasks: tuple[str, ...] = ()
    curve_sizes: tuple[int, ...] = ()  # training examples (the whole split where it is smaller)
    curve_seeds: tuple[int, ...] = (42,)
    # which heads the partial sweep replaces first (``RANKINGS``), and the rankings compared with it (notebook 6)
    # on `compare_models`, at the shares of heads `compare_fractions` (None: every partial point of the sweep):
    # deterministic rankings with every seed, `random_orders` random orders with one seed each
    ranking: str = "gates"
    compare_rankings: tuple[str, ...] = ()
    compare_models: tuple[str, ...] = ()
    random_orders: int = 3
    ranking_stability: bool = False  # also rank with another seed and on a disjoint subset (notebook 6)
    # the shares of heads the sweep replaces, the same for every model (the paper's five, ``choices.SWEEP_FRACTIONS``);
    # Table 1 and the claims need 0, 1/2 and 1
    sweep_fractions: tuple = SWEEP_FRACTIONS
    compare_fractions: tuple | None = None
    # backbone passes over real tokens only ("packed", ``papa_utils.core.packing``) or the whole layout ("padded", the
    # reference); a run made one way never reuses steps made the other way (``averages_key``)
    passes: str = "packed"

    def __post_init__(self):
        check_passes(self.passes)
        if self.precision not in CHOICES:
            raise ValueError(f"unknown precision {self.precision!r}; precisions: {', '.join(CHOICES)}")
        for name in (self.ranking, *self.compare_rankings):
            if name not in RANKINGS:
                raise ValueError(f"unknown ranking {name!r}; rankings: {', '.join(RANKINGS)}")
        missing = {0, 1 / 2, 1} - set(self.sweep_fractions)
        if missing:
            raise ValueError(f"sweep_fractions {self.sweep_fractions} lack {sorted(missing)}: Table 1 and the claims "
                             f"need no head, half of them and all of them replaced")
        if self.compare_fractions == ():
            raise ValueError("compare_fractions is empty: name the shares of heads at which the rankings are compared, "
                             "or None for every partial point of the sweep")
        outside = [f for f in self.compare_fractions or () if not (0 < f < 1 and f in self.sweep_fractions)]
        if outside:
            raise ValueError(f"compare_fractions {self.compare_fractions} has {outside}, not a partial point of "
                             f"sweep_fractions {self.sweep_fractions}: the rankings are compared where the main sweep "
                             f"has a point strictly between no head and all of them")
        if "random" in self.compare_rankings and self.random_orders > len(self.seeds):
            raise ValueError(f"{self.random_orders} random orders need as many seeds (each order runs with a seed of "
                             f"its own, and the claims pair them by seed); seeds are {self.seeds}: lower random_orders "
                             f"or add seeds")
        if self.compare_rankings and self.ranking != "gates" and "gates" not in self.compare_rankings:
            raise ValueError(f"notebook 6 compares rankings with the gates: with ranking {self.ranking!r}, add "
                             f"'gates' to compare_rankings {self.compare_rankings}, or compare none")

    def length(self, task: str) -> int:
        return self.length_override or self.task_lengths.get(task) or get_task(task).length

    def size(self, model_name: str, name: str, task: str | None = None) -> int | None:
        """The task's size, else the profile's (None: the whole split); the same for every model."""
        return self.task_sizes.get(task, {}).get(name, getattr(self, name))

    def sweep_counts(self, model_name: str, total_heads: int) -> list[int]:
        """How many heads each configuration of `model_name`'s sweep replaces (``choices.replaced_counts``)."""
        return replaced_counts(total_heads, self.sweep_fractions)

    def compare_counts(self, model_name: str, total_heads: int) -> list[int]:
        """How many heads each point of the sweep under the compared rankings replaces: the partial points of
        ``sweep_counts`` at `compare_fractions` (all of them when None); a share that rounds to none or all of the
        model's heads is no partial point of it."""
        counts = self.sweep_counts(model_name, total_heads) if self.compare_fractions is None else \
            replaced_counts(total_heads, self.compare_fractions)
        return [k for k in counts if 0 < k < total_heads]

    def sizes(self, model_name: str, task: str | None = None) -> dict:
        return {name: self.size(model_name, name, task) for name in SIZE_FIELDS}


def recorded_settings(profile: dict) -> dict:
    """A profile as a run.json records it ("profile"), as JSON values, without what a run may narrow (models,
    tasks): a setting the run did not record (it predates the setting) at its default, one it has no longer left
    out. Two runs are the same computation where these are equal."""
    import json
    from dataclasses import asdict, fields

    known = {f.name for f in fields(Profile)}
    full = asdict(Profile(**{k: v for k, v in profile.items() if k in known}))
    return {k: v for k, v in json.loads(json.dumps(full)).items() if k not in ("models", "tasks")}

PROFILES = {
    "smoke": Profile("smoke", ("minilm-l3",), ("sst2", "mrpc", "ner"), seeds=(42, 43), average_examples=64,
                     precision="fp32",
                     train_examples=64, dev_examples=64, rank_examples=32, epochs=2, length_override=32,
                     curve_models=("minilm-l3",), curve_tasks=("sst2",), curve_sizes=(16, 64),
                     compare_rankings=("input_dependence", "random"), compare_models=("minilm-l3",),
                     random_orders=2, ranking_stability=True),
    # One protocol for every model (docs/cpu_profile.md): per task the same training examples
    # (4,000 where the split has them, MRPC's whole 3,668), the same dev examples (whole splits; MNLI matched:
    # one fixed subset of 3,000), the same L (the shortest of 64 and 128 that truncates at most 3% of them,
    # truncation.csv), the same probe schedule and the same sweep (no head, half of them, all of them). The
    # constant matrices average the probe's own training examples, so their pass also gives the baseline's
    # features. Probe: the paper's batch of 16, 5 epochs at lr 2e-4 decaying linearly to 0 (the run publishes
    # which dev curves ended flat, convergence.csv); a batch of 64 is faster but moves the results beyond
    # the seeds' noise (docs/speed.md). Heads ranked by input dependence (a single pass, no seed).
    "cpu": Profile("cpu", ("minilm-l3", "minilm-l6", "mpnet-base"), ("cola", "sst2", "mrpc", "mnli", "ner", "pos"),
                   seeds=(42, 43, 44), average_examples=4000, train_examples=4000, dev_examples=None,
                   task_sizes={"mnli": {"dev_examples": 3000}}, sweep_fractions=(0, 1 / 2, 1),
                   rank_examples=500, rank_epochs=3, gate_lr=1e-2, epochs=5, probe_lr=2e-4, lr_schedule="linear",
                   task_lengths={"cola": 64, "sst2": 128, "mrpc": 128, "mnli": 128, "ner": 64, "pos": 64},
                   precision="auto", ranking="input_dependence"),
    # PROFILES["cpu-robustness"] (below): the cpu protocol, plus what tests whether its verdicts depend on the head
    # ranking or on the probe's training size
    # full splits on a GPU with the Hub: hidden states of whole splits do not fit in memory, so the backbone
    # streams (eval mode) for every batch; gates train for as long as the probe. No learning curve (the
    # cpu-robustness profile has them)
    "paper": Profile("paper", ("bert-base-uncased", "bert-large-uncased", "roberta-base", "roberta-large",
                               "microsoft/deberta-base", "microsoft/deberta-large"),
                     ("cola", "sst2", "mrpc", "mnli", "ner", "pos"), seeds=(42, 43, 44), epochs=15, rank_epochs=15,
                     protocol="streaming", precision="fp32",
                     # SST-2 at 128, not the single-sentence default 64, which cuts 22% of its dev sentences (the
                     # uncased BERT vocabulary, truncation.csv); the other defaults cut at most 3%
                     task_lengths={"sst2": 128}),
    # the paper profile's path on a machine without a GPU or the Hub (`make figures PROFILE=paper-dry
    # WORKERS=2`, and a test): its protocol (streaming probe, fp32, the gates, whole splits: no size is set)
    # on tiny randomly initialised BERT, RoBERTa and DeBERTa v1 at two sizes each (the paper grid's six models)
    # built into the local models folder and loaded from there as Hub ids are, on the two smallest paper tasks and
    # RTE, a third small one, so that claim 3's model-level test runs on the paper grid's shape. Cheaper only where
    # the path stays the same: L = 32, two seeds, one epoch. Its numbers mean nothing.
    "paper-dry": Profile("paper-dry", tuple(TINY_RANDOM), ("cola", "mrpc", "rte"), seeds=(42, 43), epochs=1, rank_epochs=1,
                         protocol="streaming", precision="fp32", length_override=32),
}


# The cpu protocol (every setting the same, so its Table 1 cells are the same computation: a run folder that holds
# a cpu run's steps reuses them) plus what the cpu run leaves out, each on every model: the paper's sweep points
# (7/8 and 15/16 of the heads too), the heads ranked four ways (gates, input dependence, variance, one random
# order) on every cell with the half-heads point under each (notebook 6), and learning curves at 1,000, 2,000 and
# 4,000 training examples on three tasks with three seeds (notebook 5). The rankings are compared at 1/2 only:
# at 7/8 and 15/16 too they would repeat the comparison's probes twice more, for no claim. Longer than the cpu
# run on 2 cores: a run that resumes.
PROFILES["cpu-robustness"] = replace(
    PROFILES["cpu"], name="cpu-robustness", sweep_fractions=SWEEP_FRACTIONS, compare_fractions=(1 / 2,),
    compare_rankings=("gates", "variance", "random"), compare_models=PROFILES["cpu"].models, random_orders=1,
    curve_models=PROFILES["cpu"].models, curve_tasks=("cola", "mnli", "ner"), curve_sizes=(1000, 2000, 4000),
    curve_seeds=(42, 43, 44))


# the parts of a run that only some profiles ask for: what a profile lists for each, models first (``why_absent``)
OPTIONAL_PARTS = {"learning curve": ("curve_models", "curve_tasks"),
                  "ranking comparison": ("compare_models", "compare_rankings")}


def why_absent(profile: Profile, part: str) -> str | None:
    """Why a run of `profile` has no `part` (``OPTIONAL_PARTS``), as a sentence that names the profiles that run it;
    None when it has one. A run narrowed with MODELS= or TASKS= may leave out what the profile runs it on."""
    fields = OPTIONAL_PARTS[part]
    has = lambda p: all(getattr(p, f) for f in fields)  # noqa: E731
    if has(profile):
        return None
    full = PROFILES.get(profile.name)
    if full is not None and has(full):
        where = f"models {', '.join(full.curve_models)} and tasks {', '.join(full.curve_tasks)}" \
            if part == "learning curve" else f"models {', '.join(full.compare_models)}"
        return (f"this run has no {part}: the {profile.name} profile runs it on {where}, which this run "
                f"(models {', '.join(profile.models)}; tasks {', '.join(profile.tasks)}) leaves out")
    others = ", ".join(n for n, p in PROFILES.items() if has(p))
    return f"this run has no {part}: the {profile.name} profile asks for none (profiles that run one: {others})"


def get_profile(name: str, models=None, tasks=None, ranking: str | None = None, passes: str | None = None) -> Profile:
    """A profile by name, optionally narrowed to some models / tasks (comma-separated or lists), optionally with
    another head ranking for its partial sweep (``RANKINGS``) or other backbone passes (``choices.PASSES``)."""
    if name not in PROFILES:
        raise KeyError(f"unknown profile {name!r}; profiles: {', '.join(PROFILES)}")
    profile = PROFILES[name]
    if passes:
        profile = replace(profile, passes=passes)  # checked with the rest of the profile
    if ranking:  # the gates, which notebook 6 compares every ranking with, take the place of the new main ranking
        compared = tuple("gates" if m == ranking else m for m in profile.compare_rankings)
        if profile.compare_rankings and ranking != "gates" and "gates" not in compared:
            compared = ("gates",) + compared
        profile = replace(profile, ranking=ranking, compare_rankings=compared)
    split = lambda v: tuple(v.split(",")) if isinstance(v, str) else tuple(v)  # noqa: E731
    if models:
        profile = replace(profile, models=split(models))
    if tasks:
        for t in split(tasks):
            get_task(t)
        profile = replace(profile, tasks=split(tasks))
    if models or tasks:  # the learning curve and the ranking comparison cover what the narrowed run covers
        curve = tuple(m for m in profile.curve_models if m in profile.models)
        profile = replace(profile, curve_models=curve,
                          curve_tasks=tuple(t for t in profile.curve_tasks if curve and t in profile.tasks),
                          compare_models=tuple(m for m in profile.compare_models if m in profile.models))
    return profile
