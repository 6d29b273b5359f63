"""Classification figures from labels and probabilities: NumPy only, no Keras.

Computed here rather than by Keras so that evaluate can give per-class figures, the confusion
matrix and top-k from one pass of predictions; the loss and accuracy agree with Keras'
`model.evaluate` (the loss to float rounding, the accuracy exactly).
"""
from __future__ import annotations

import numpy as np

from cnntrain.errors import CnntrainError

# Keras clips probabilities to [epsilon, 1 - epsilon] before taking the log
# (keras.backend.epsilon(), 1e-7 unless configured otherwise).
_EPSILON = 1e-7
MOST_CONFUSED = 5


# ---------------------------------------------------------------- pure arithmetic


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) int64 counts: rows are true classes, columns predictions."""
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    k = int(num_classes)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{y_true.shape[0]} labels but {y_pred.shape[0]} predictions")
    for name, arr in (("label", y_true), ("prediction", y_pred)):
        if arr.size and (arr.min() < 0 or arr.max() >= k):
            raise CnntrainError(f"a {name} is outside the {k} classes of the model")
    return np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)


def classification_metrics(y_true, y_pred, num_classes: int) -> dict:
    """Per-class precision, recall, F1 and support, and their macro-F1, from hard predictions.

    Conventions (those of scikit-learn with zero_division=0):
    - the precision of a class that is never predicted is 0.0 (0/0 taken as 0);
    - the recall of a class absent from y_true is 0.0, and its support 0;
    - F1 is 0.0 when precision and recall are both 0;
    - macro-F1 is the plain mean of the per-class F1 over all num_classes classes.
    """
    cm = confusion_matrix(y_true, y_pred, num_classes)
    return _metrics_from_confusion(cm)


def _metrics_from_confusion(cm: np.ndarray) -> dict:
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)   # column sums: how often each class was predicted
    support = cm.sum(axis=1)                          # row sums: how often each class is the truth
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)  # never predicted -> 0.0
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {
        "precision": [float(v) for v in precision],
        "recall": [float(v) for v in recall],
        "f1": [float(v) for v in f1],
        "support": [int(v) for v in support],
        "macro_f1": float(f1.mean()) if len(f1) else 0.0,
        "confusion": cm,
    }


def _logsumexp(z) -> np.ndarray:
    """log(sum(exp(z))) per row of float64 logits, without overflow."""
    top = z.max(axis=1, keepdims=True)
    return np.log(np.exp(z - top).sum(axis=1)) + top[:, 0]


def sparse_crossentropy_logits(logits, y_true) -> np.ndarray:
    """Per-sample crossentropy from logits: logsumexp(z) - z[y], in float64."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64)
    return _logsumexp(z) - z[np.arange(len(y)), y]


def sparse_crossentropy(probabilities, y_true) -> np.ndarray:
    """Per-sample crossentropy exactly as Keras computes it from probabilities.

    Keras clips to [eps, 1-eps], takes the log, and feeds that to a softmax
    crossentropy, which renormalizes: loss = log(sum(clipped)) - log(clipped[y]).
    Computed in float64.
    """
    p = np.clip(np.asarray(probabilities, dtype=np.float64), _EPSILON, 1.0 - _EPSILON)
    y = np.asarray(y_true, dtype=np.int64)
    picked = p[np.arange(len(y)), y]
    return np.log(p.sum(axis=1)) - np.log(picked)


def smoothed_crossentropy(probabilities, y_true, smoothing: float, logits=None) -> np.ndarray:
    """Per-sample categorical crossentropy against labels smoothed as Keras smooths them (1 - s on
    the true class, plus s / classes on every class): the loss fit trains and reports with
    compile.label_smoothing. From the logits where known (Keras' log-softmax), else from the
    probabilities normalized to sum 1 and clipped to [eps, 1 - eps] as Keras does. In float64."""
    y = np.asarray(y_true, dtype=np.int64)
    if logits is not None:
        z = np.asarray(logits, dtype=np.float64)
        log_p = z - _logsumexp(z)[:, None]
    else:
        p = np.asarray(probabilities, dtype=np.float64)
        log_p = np.log(np.clip(p / p.sum(axis=1, keepdims=True), _EPSILON, 1.0 - _EPSILON))
    classes = log_p.shape[1]
    return -((1.0 - smoothing) * log_p[np.arange(len(y)), y] + smoothing / classes * log_p.sum(axis=1))


def top_k_hits(probabilities, y_true, k: int) -> np.ndarray:
    """Whether the true class is among the k most probable (ties count in its favour, as tf.math.in_top_k)."""
    p = np.asarray(probabilities)
    y = np.asarray(y_true, dtype=np.int64)
    true_p = p[np.arange(len(y)), y]
    higher = (p > true_p[:, None]).sum(axis=1)
    return higher < k


def top_k_figures(probs, y, k: int) -> dict:
    """{"top_k", "top_k_accuracy"}, or nothing when k is not below the number of classes: every
    label is then among the top k, and its 100% would say nothing of the model."""
    if k >= probs.shape[1]:
        return {}
    return {"top_k": k, "top_k_accuracy": float(np.mean(top_k_hits(probs, y, k)))}


def metrics_from_probabilities(probs, y, class_names, *, top_k=5, logits=None, label_smoothing=0.0) -> dict:
    """Every figure of evaluate_model from (N, classes) probabilities (and the logits if known); the
    loss against labels smoothed by `label_smoothing`, as the model's fit computed it."""
    probs = np.asarray(probs)
    y = np.asarray(y, dtype=np.int64)
    if label_smoothing:
        losses = smoothed_crossentropy(probs, y, label_smoothing, logits)
    else:
        losses = sparse_crossentropy(probs, y) if logits is None else sparse_crossentropy_logits(logits, y)
    names = list(class_names)
    pred = probs.argmax(axis=1)
    m = classification_metrics(y, pred, len(names))
    cm = m["confusion"]
    off = [(int(cm[i, j]), i, j) for i in range(len(names)) for j in range(len(names))
           if i != j and cm[i, j] > 0]
    off.sort(key=lambda t: (-t[0], t[1], t[2]))
    return {
        "samples": int(len(y)),
        "loss": float(losses.mean()),
        "accuracy": float(np.mean(pred == y)),
        **top_k_figures(probs, y, int(top_k)),
        "per_class": [
            {"class": names[c], "precision": m["precision"][c], "recall": m["recall"][c],
             "f1": m["f1"][c], "support": m["support"][c]}
            for c in range(len(names))
        ],
        "macro_f1": m["macro_f1"],
        "confusion": cm.tolist(),
        "most_confused": [{"true": names[i], "predicted": names[j], "count": n}
                          for n, i, j in off[:MOST_CONFUSED]],
        "class_names": names,
    }
