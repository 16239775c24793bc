"""Task metrics, in points (x100) like the paper: Matthews correlation, F1, accuracy, Pearson/Spearman,
entity-level F1 (seqeval) and token accuracy. Valid ranges: [-100, 100] for correlations, [0, 100] else."""
from __future__ import annotations

import numpy as np

from .tasks import NER_LABELS, Task

RANGES = {"matthews_corr": (-100, 100), "pearson": (-100, 100), "spearman": (-100, 100)}


def metric_range(name: str) -> tuple[float, float]:
    return RANGES.get(name, (0, 100))


def compute_metrics(task: Task, predictions, labels) -> dict[str, float]:
    """Every metric of `task`. predictions: class ids (or scores for regression), shape like labels;
    token tasks: [n, L] with labels -100 where ignored."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import f1_score, matthews_corrcoef

    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if task.token_task:
        keep = labels != -100
        if task.name == "ner":
            from seqeval.metrics import f1_score as entity_f1

            true_tags = [[NER_LABELS[t] for t in row[k]] for row, k in zip(labels, keep)]
            pred_tags = [[NER_LABELS[p] for p in row[k]] for row, k in zip(predictions, keep)]
            return {"entity_f1": 100 * float(entity_f1(true_tags, pred_tags))}
        return {"token_accuracy": 100 * float(np.mean(predictions[keep] == labels[keep]))}
    out = {}
    for name in task.metrics:
        if name == "accuracy":
            out[name] = 100 * float(np.mean(predictions == labels))
        elif name == "f1":  # of the positive class (MRPC, QQP: label 1)
            out[name] = 100 * float(f1_score(labels, predictions, pos_label=1, average="binary", zero_division=0))
        elif name == "matthews_corr":
            out[name] = 100 * float(matthews_corrcoef(labels, predictions))
        elif name in ("pearson", "spearman"):
            fn = pearsonr if name == "pearson" else spearmanr
            value = fn(predictions, labels)[0] if np.std(predictions) > 0 else 0.0
            out[name] = 100 * float(value)
    return out
