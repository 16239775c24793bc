"""Task metrics, in points (x100) like the paper: Matthews correlation, F1, accuracy, Pearson/Spearman,
entity-level F1 (seqeval) and token accuracy. Valid ranges: [-100, 100] for correlations, [0, 100] else."""
from __future__ import annotations

import numpy as np

from ..settings.tasks import NER_LABELS, Task

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


def example_statistics(task: Task, metric: str, predictions, labels) -> np.ndarray:
    """Per dev example, the counts that `metric` is a function of, [n, s] integers, so that the metric of any
    resample of the examples is ``metric_from_statistics`` of its summed rows (what a bootstrap over dev
    examples needs): accuracy [correct, 1]; F1 of the positive class [tp, fp, fn]; Matthews correlation the
    example's cell of the C x C confusion matrix (one-hot, label-major); entity F1 per sentence [correct
    entities, predicted, true]; token accuracy per sentence [correct, tokens]. Not for regression metrics."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if metric == "accuracy":
        return np.stack([predictions == labels, np.ones(len(labels), dtype=bool)], axis=1).astype(np.int64)
    if metric == "f1":
        p, y = predictions == 1, labels == 1
        return np.stack([p & y, p & ~y, ~p & y], axis=1).astype(np.int64)
    if metric == "matthews_corr":
        c = task.num_labels
        return np.eye(c * c, dtype=np.int64)[labels * c + predictions]
    if metric == "token_accuracy":
        keep = labels != -100
        return np.stack([((predictions == labels) & keep).sum(1), keep.sum(1)], axis=1).astype(np.int64)
    if metric == "entity_f1":
        from seqeval.metrics.sequence_labeling import get_entities

        rows = []
        for row_p, row_y in zip(predictions, labels):
            keep = row_y != -100
            true = set(get_entities([NER_LABELS[t] for t in row_y[keep]]))
            pred = set(get_entities([NER_LABELS[t] for t in row_p[keep]]))
            rows.append((len(true & pred), len(pred), len(true)))
        return np.array(rows, dtype=np.int64).reshape(-1, 3)
    raise ValueError(f"no per-example statistics for metric {metric!r} (a regression metric cannot be resampled "
                     f"from per-example counts); metrics with them: accuracy, f1, matthews_corr, token_accuracy, "
                     f"entity_f1")


def metric_from_statistics(metric: str, sums) -> np.ndarray:
    """The metric, in points, from statistics summed over examples ([..., s]; ``example_statistics``);
    vectorised over leading dimensions (e.g. one row per bootstrap draw)."""
    s = np.asarray(sums, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric in ("accuracy", "token_accuracy"):
            return 100 * s[..., 0] / np.maximum(s[..., 1], 1)
        if metric in ("f1", "entity_f1"):
            if metric == "f1":
                tp, fp, fn = s[..., 0], s[..., 1], s[..., 2]
                predicted, true = tp + fp, tp + fn
            else:
                tp, predicted, true = s[..., 0], s[..., 1], s[..., 2]
            return np.where(predicted + true > 0, 100 * 2 * tp / np.maximum(predicted + true, 1), 0.0)
        if metric == "matthews_corr":
            c = int(round(np.sqrt(s.shape[-1])))
            cm = s.reshape(*s.shape[:-1], c, c)  # [..., label, prediction]
            n = cm.sum((-1, -2))
            correct = np.trace(cm, axis1=-2, axis2=-1)
            t, p = cm.sum(-1), cm.sum(-2)
            cov_yp = correct * n - (t * p).sum(-1)
            cov_yy = n * n - (t * t).sum(-1)
            cov_pp = n * n - (p * p).sum(-1)
            denominator = np.sqrt(cov_yy * cov_pp)
            return np.where(denominator > 0, 100 * cov_yp / np.where(denominator > 0, denominator, 1), 0.0)
    raise ValueError(f"no per-example statistics for metric {metric!r}")
