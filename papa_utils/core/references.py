"""What a probing baseline is read against: the score of a trivial predictor on the same dev data, with the same
metric. (The other reference, the attention-free probe, is the probe itself fed only hidden-state level 0, the
embeddings before any attention: ``ProbeConfig(levels="embeddings")`` in probe.py.)

Trivial predictors, fitted on the probe's training subset:
- classification: the majority class (ties: the smallest label); its accuracy and F1 follow, its MCC is 0;
- regression (STS-B): a constant, the mean training label (its correlations are 0);
- NER: every token ``O`` (entity F1 0);
- POS: each word form's most frequent tag in the training subset, unknown words the overall most frequent tag
  (the standard unigram baseline).
"""
from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from .layout import IGNORE, Encoded
from .metrics import compute_metrics, example_statistics
from ..settings.tasks import NER_LABELS, TaskSplit


def majority_label(labels) -> int:
    """The most frequent label; ties go to the smallest."""
    counts = Counter(int(x) for x in labels)
    return min(counts, key=lambda label: (-counts[label], label))


def unigram_tagger(sentences, tags) -> tuple[dict, int]:
    """Most frequent tag of every word form (ties: the smallest tag) and the overall most frequent tag."""
    seen: dict[str, Counter] = defaultdict(Counter)
    for words, row in zip(sentences, tags):
        for word, tag in zip(words, row):
            seen[str(word)][int(tag)] += 1
    overall = majority_label(int(t) for row in tags for t in row)
    return {word: min(c, key=lambda t: (-c[t], t)) for word, c in seen.items()}, overall


def trivial_predictions(train: TaskSplit, dev: TaskSplit, dev_encoded: Encoded) -> np.ndarray:
    """Predictions of the task's trivial predictor for `dev`, shaped like ``dev_encoded.labels`` (token tasks:
    [n, L], IGNORE where the layout holds no label)."""
    task = train.task
    labels = dev_encoded.labels.numpy()
    if not task.token_task:
        if task.is_regression:
            return np.full(labels.shape, float(train.frame[task.label_column].mean()), dtype=np.float32)
        return np.full(labels.shape, majority_label(train.frame[task.label_column]))
    grid = np.full(labels.shape, IGNORE)
    placed = labels != IGNORE
    if task.name == "ner":
        grid[placed] = NER_LABELS.index("O")
        return grid
    column = task.text_columns[0]
    tagger, overall = unigram_tagger(train.frame[column], train.frame[task.label_column])
    words = dev_encoded.words.numpy()
    for i, sentence in enumerate(dev.frame[column]):
        for slot in np.flatnonzero(placed[i]):
            grid[i, slot] = tagger.get(str(sentence[words[i, slot]]), overall)
    return grid


def trivial_metrics(train: TaskSplit, dev: TaskSplit, dev_encoded: Encoded) -> dict[str, float]:
    """Every metric of the task for its trivial predictor, on the dev data as the probe sees them."""
    return trivial_reference(train, dev, dev_encoded)[0]


def trivial_reference(train: TaskSplit, dev: TaskSplit, dev_encoded: Encoded) -> tuple[dict[str, float], np.ndarray | None]:
    """The trivial predictor's metrics (``trivial_metrics``) and, per dev example, the counts of its headline metric
    (``metrics.example_statistics``; None for regression), for bootstraps paired with the probes'."""
    task = train.task
    predictions, labels = trivial_predictions(train, dev, dev_encoded), dev_encoded.labels.numpy()
    statistics = None if task.is_regression else example_statistics(task, task.metric, predictions, labels)
    return compute_metrics(task, predictions, labels), statistics
