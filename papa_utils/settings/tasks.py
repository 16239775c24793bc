"""One registry of tasks (GLUE + CoNLL-2003 NER/POS) and a verified loader for their splits.

Data come from ``$PAPA_DATA_DIR`` (layout ``glue/<task>/<split>.parquet``, ``conll2003/<split>.parquet``),
checked against ``data/checksums.json``; without ``PAPA_DATA_DIR`` they come from the Hugging Face Hub.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger("papa_utils")

CHECKSUMS_FILE = Path(__file__).resolve().parents[2] / "data" / "checksums.json"
OFFICIAL_MNLI_TRAIN = 392_702

NER_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
# CoNLL-2003's part-of-speech tags in the order of its labels (the Hub's `conll2003` ClassLabel names)
POS_LABELS = ['"', "''", "#", "$", "(", ")", ",", ".", ":", "``", "CC", "CD", "DT", "EX", "FW", "IN", "JJ", "JJR",
              "JJS", "LS", "MD", "NN", "NNP", "NNPS", "NNS", "NN|SYM", "PDT", "POS", "PRP", "PRP$", "RB", "RBR", "RBS",
              "RP", "SYM", "TO", "UH", "VB", "VBD", "VBG", "VBN", "VBP", "VBZ", "WDT", "WP", "WP$", "WRB"]


@dataclass(frozen=True)
class Task:
    """What the pipeline needs to know about a task."""

    name: str
    folder: str  # under $PAPA_DATA_DIR
    hub: tuple[str, str | None]  # (dataset id, config)
    text_columns: tuple[str, ...]  # one column: single sentence; two: pair; ("tokens",): token task
    label_column: str
    num_labels: int  # 1 for regression
    metrics: tuple[str, ...]  # the first is the headline metric
    length: int  # default fixed length L
    splits: dict = field(default_factory=lambda: {"train": "train", "validation": "validation"})
    token_task: bool = False

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2

    @property
    def is_regression(self) -> bool:
        return self.num_labels == 1

    @property
    def metric(self) -> str:
        return self.metrics[0]


_NOTED: set[str] = set()  # data notes already logged in this process

def _glue(name, cols, labels, metrics, length, splits=None):
    return Task(name, f"glue/{name}", ("nyu-mll/glue", name), cols, "label", labels, metrics, length,
                splits or {"train": "train", "validation": "validation"})


_CONLL_SPLITS = {"train": "train", "validation": "validation", "test": "test"}
TASKS: dict[str, Task] = {
    "cola": _glue("cola", ("sentence",), 2, ("matthews_corr",), 64),
    "sst2": _glue("sst2", ("sentence",), 2, ("accuracy",), 64),
    "mrpc": _glue("mrpc", ("sentence1", "sentence2"), 2, ("f1", "accuracy"), 128),
    "qnli": _glue("qnli", ("question", "sentence"), 2, ("accuracy",), 128),
    "mnli": _glue("mnli", ("premise", "hypothesis"), 3, ("accuracy",), 128,
                  {"train": "train", "validation": "validation_matched",
                   "validation_matched": "validation_matched", "validation_mismatched": "validation_mismatched"}),
    "rte": _glue("rte", ("sentence1", "sentence2"), 2, ("accuracy",), 128),
    "qqp": _glue("qqp", ("question1", "question2"), 2, ("accuracy", "f1"), 128),
    "stsb": _glue("stsb", ("sentence1", "sentence2"), 1, ("pearson", "spearman"), 128),
    "ner": Task("ner", "conll2003", ("conll2003", None), ("tokens",), "ner_tags", len(NER_LABELS),
                ("entity_f1",), 128, _CONLL_SPLITS, token_task=True),
    "pos": Task("pos", "conll2003", ("conll2003", None), ("tokens",), "pos_tags", len(POS_LABELS),
                ("token_accuracy",), 128, _CONLL_SPLITS, token_task=True),
}


class DataError(RuntimeError):
    """Task data that are missing, malformed or not the verified files."""


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None


@dataclass
class TaskSplit:
    """One split of a task, or a subset of it: the examples (a DataFrame) and where they came from.

    `checksum` identifies exactly these examples in this order: for a whole split it is the file's sha256 (or
    the Hub's fingerprint); a subset (``head``, ``sample``) hashes its parent's checksum with the positions of
    the rows it keeps, so two different subsets of one file never look alike. `file_checksum` stays the file's.
    """

    task: Task
    split: str
    frame: pd.DataFrame
    source: str  # file path or Hub id
    checksum: str  # identity of these rows (see above)
    note: str = ""  # non-empty when the data are only part of the official split
    file_checksum: str = ""  # sha256 of the file (local) or the datasets fingerprint (Hub)

    def __post_init__(self):
        self.file_checksum = self.file_checksum or self.checksum

    def __len__(self) -> int:
        return len(self.frame)

    def rows(self, positions) -> "TaskSplit":
        """The examples at `positions` (in that order), with a checksum that names them."""
        positions = np.asarray(positions, dtype=np.int64)
        identity = hashlib.sha256(self.checksum.encode())
        identity.update(positions.tobytes())
        return TaskSplit(self.task, self.split, self.frame.iloc[positions].reset_index(drop=True), self.source,
                         identity.hexdigest(), self.note, self.file_checksum)

    def head(self, n: int | None) -> "TaskSplit":
        """The first n examples (all when n is None or larger than the split)."""
        if n is None or n >= len(self.frame):
            return self
        return self.rows(np.arange(n))

    def sample(self, n: int | None, seed: int = 0, skip: int = 0) -> "TaskSplit":
        """A random subset of n examples (fixed by `seed`), in random order: the first n of one random order of the
        split, or with `skip` the n after the first `skip` (a subset disjoint from the first `skip` examples)."""
        if skip and (n is None or skip + n > len(self.frame)):
            raise ValueError(f"the {self.task.name} {self.split} split has {len(self.frame)} examples: it cannot give "
                             f"{n} more after skipping {skip}; use a smaller subset")
        if not skip and (n is None or n >= len(self.frame)):
            return self
        return self.rows(np.random.RandomState(seed).permutation(len(self.frame))[skip: skip + n])


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _expected_checksums() -> dict[str, list[str]]:
    """Relative path -> accepted sha256 values (the staged copy and, where known, the Hub's file)."""
    return json.loads(CHECKSUMS_FILE.read_text())["sha256"]


def data_dir() -> Path | None:
    """The local data folder from $PAPA_DATA_DIR, or None (use the Hub). A set but missing folder is an error."""
    value = os.environ.get("PAPA_DATA_DIR")
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise DataError(
            f"PAPA_DATA_DIR={value} is not a folder. Point it at a folder laid out as glue/<task>/<split>.parquet "
            f"and conll2003/<split>.parquet (for example ../shared/data), or unset it to read from the Hugging Face Hub."
        )
    return path


def _check_schema(task: Task, frame: pd.DataFrame, where: str) -> None:
    needed = list(task.text_columns) + [task.label_column]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(f"{where} has no column(s) {missing} needed by task {task.name!r} "
                        f"(columns found: {list(frame.columns)}); it is not the {task.hub[0]} schema")
    for c in task.text_columns:
        column = frame[c].dropna()
        if task.token_task:
            ok = column.map(lambda words: all(isinstance(w, str) for w in words)).all()
        else:
            ok = column.map(lambda text: isinstance(text, str)).all()
        if not ok:
            raise DataError(f"{where}: column {c!r} should hold {'lists of strings' if task.token_task else 'strings'}")
    labels = frame[task.label_column]
    if not task.token_task and not pd.api.types.is_numeric_dtype(labels):
        raise DataError(f"{where}: column {task.label_column!r} should be numeric, found {labels.dtype}")


def _read_local(task: Task, split: str, root: Path) -> TaskSplit:
    file_split = task.splits[split]
    folder = root / task.folder
    path = folder / f"{file_split}.parquet"
    note = ""
    if not path.exists() and task.name == "mnli" and split == "train" and (folder / "train_subset.parquet").exists():
        path = folder / "train_subset.parquet"
    if not path.exists():
        hub_id, config = task.hub
        raise DataError(
            f"no data for task {task.name} split {split} under $PAPA_DATA_DIR/{task.folder} "
            f"(expected {file_split}.parquet in {folder}). Get it from the Hugging Face Hub ({hub_id}"
            f"{', config ' + config if config else ''}): unset PAPA_DATA_DIR on a machine that reaches the Hub, "
            f"or place the Hub's parquet file there as {file_split}.parquet."
        )
    rel = path.relative_to(root).as_posix()
    stat = path.stat()  # the file's identity: a rewritten file (even with its old time restored) is read again
    expected = tuple(_expected_checksums().get(rel) or ())
    frame, actual = _read_verified(task.name, str(path), expected,
                                   (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns))
    if path.name == "train_subset.parquet":
        note = (f"MNLI train is the local subset {rel}: {len(frame):,} of the {OFFICIAL_MNLI_TRAIN:,} official pairs "
                f"(two random samples); results are not comparable with full-MNLI training")
        if note not in _NOTED:  # once per process: every later read of the split has the same cause
            _NOTED.add(note)
            log.warning(note)
    # a shallow copy: pandas (3.x, pinned) copies on write, so a caller's change never reaches the cached frame
    return TaskSplit(task, split, frame.copy(deep=False), str(path), actual, note)


@lru_cache(maxsize=16)
def _read_verified(task_name: str, path: str, expected: tuple, identity: tuple) -> tuple[pd.DataFrame, str]:
    """A local Parquet file checked against its `expected` sha256 values (data/checksums.json; none: read
    unverified, with a warning), read, and checked against the task's schema: once per process for each version
    of the file (`identity`: inode, size, times) and of its expected values. Errors are never cached."""
    actual = sha256_file(Path(path))
    if expected and actual not in expected:
        raise DataError(
            f"checksum mismatch for {path}: sha256 {actual}, expected {' or '.join(expected)} (data/checksums.json). "
            f"The file is damaged or not the verified version; copy it again from the staged data or the Hub."
        )
    if not expected:
        log.warning("%s is not in data/checksums.json; using it unverified (sha256 %s)", path, actual)
    try:
        frame = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for damaged files
        raise DataError(f"cannot read {path} as Parquet ({e.__class__.__name__}: {e}); the file is damaged; "
                        f"copy it again from the staged data or the Hub.") from None
    _check_schema(get_task(task_name), frame, path)
    return frame, actual


def hub_reachable(timeout: float = 3.0) -> bool:
    """True unless HF_HUB_OFFLINE is set or huggingface.co cannot be reached within `timeout` seconds."""
    import socket

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False"):
        return False
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _read_hub(task: Task, split: str) -> TaskSplit:
    import datasets

    hub_id, config = task.hub
    if not hub_reachable():
        raise DataError(
            f"PAPA_DATA_DIR is not set and the Hugging Face Hub is not reachable, so there is no source for task "
            f"{task.name} split {split}. Set PAPA_DATA_DIR to a local data folder (e.g. ../shared/data) or "
            f"connect to the Hub ({hub_id}).")
    try:
        ds = datasets.load_dataset(hub_id, config, split=task.splits[split])
    except Exception as e:
        raise DataError(
            f"cannot load {hub_id}{'/' + config if config else ''} split {task.splits[split]} from the Hugging Face "
            f"Hub ({e.__class__.__name__}). Set PAPA_DATA_DIR to a local data folder (e.g. ../shared/data) or "
            f"connect to the Hub."
        ) from None
    frame = ds.to_pandas()
    _check_schema(task, frame, f"{hub_id} {split}")
    return TaskSplit(task, split, frame, f"hub:{hub_id}/{config or ''}", ds._fingerprint)


def load_task(name: str, split: str = "train") -> TaskSplit:
    """Load one split of a task, verified. `split` is 'train', 'validation' (MNLI: matched) or a task-specific one."""
    task = get_task(name)
    if split not in task.splits:
        raise DataError(f"task {name!r} has no split {split!r}; its splits are {', '.join(task.splits)}")
    root = data_dir()
    return _read_local(task, split, root) if root is not None else _read_hub(task, split)
