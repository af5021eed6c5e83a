"""The gate by the model's task: does the engine give the fp32 model's answers?

The first output is the model's answer, scores over its last axis (classes, or the vocabulary at
each position):
- agreement: share of answers (samples, or positions of a sequence) whose argmax equals fp32's;
- topK: share whose fp32 argmax is among the engine's K best scores;
- with labels (spec.validation's set): accuracy = argmax of each sample's scores == its label,
  for fp32 and for the engine on the same inputs; the engine may lose at most maxAccuracyDrop
  (default 0.01) and must reach minAccuracy when given.
The elementwise errors (gate.check_accuracy) are still measured and reported, and NaN/Inf fails
whatever the metric. Pure numpy over outputs already computed: the runners live in steps.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from modelops_contract.enums import AccuracyMetric
from modelops_contract.request import AccuracyReport, BuildRequest

DEFAULT_MIN_AGREEMENT = 0.99
DEFAULT_TOP_K = 5
DEFAULT_MAX_ACCURACY_DROP = 0.01
WORST_SHOWN = 3


def gate_metric(request: BuildRequest) -> AccuracyMetric:
    """The request's metric; default agreement for int8, maxAbs for fp32/fp16."""
    if request.metric is not None:
        return AccuracyMetric(request.metric)
    return AccuracyMetric.AGREEMENT if request.precision == "int8" else AccuracyMetric.MAX_ABS


def judged_by_task(request: BuildRequest) -> bool:
    """Whether the gate runs the task's figures (a task metric, or labels to score against)."""
    return gate_metric(request) != AccuracyMetric.MAX_ABS or request.labelled_set is not None


def _scores(output: Any) -> Any:
    """[answers, classes]: every position of every sample is one answer."""
    array = np.asarray(output, dtype=np.float64)
    return array.reshape(-1, array.shape[-1]) if array.ndim > 1 else array.reshape(-1, 1)


def agreement(reference: Any, engine: Any) -> tuple[float, Any]:
    """(share of answers whose argmax equals the reference's, mask of agreeing answers)."""
    want, got = _scores(reference), _scores(engine)
    same = np.argmax(want, axis=1) == np.argmax(got, axis=1)
    return float(same.mean()) if same.size else 1.0, same


def top_k_agreement(reference: Any, engine: Any, k: int) -> tuple[float, Any]:
    """(share of answers whose reference argmax is among the engine's k best, mask)."""
    want, got = _scores(reference), _scores(engine)
    best = np.argmax(want, axis=1)
    k = min(k, got.shape[1])
    top = np.argpartition(-got, k - 1, axis=1)[:, :k]
    hit = (top == best[:, None]).any(axis=1)
    return float(hit.mean()) if hit.size else 1.0, hit


def accuracy(output: Any, labels: Any) -> float:
    """Share of samples whose argmax over their flattened scores is their label."""
    scores = np.asarray(output, dtype=np.float64).reshape(len(labels), -1)
    return float((np.argmax(scores, axis=1) == np.asarray(labels)).mean()) if len(labels) else 0.0


def _worst(reference: Any, engine: Any, mask: Any) -> str:
    """The answers that differ most: `answer 17: fp32 class 3 (4.21), int8 class 5 (3.90)`."""
    want, got = _scores(reference), _scores(engine)
    wrong = np.flatnonzero(~mask)
    if wrong.size == 0:
        return ""
    gap = np.abs(want - got).max(axis=1)[wrong]
    shown = []
    for index in wrong[np.argsort(-gap)][:WORST_SHOWN]:
        a, b = int(np.argmax(want[index])), int(np.argmax(got[index]))
        shown.append(
            f"answer {int(index)}: fp32 class {a} ({want[index, a]:.4g}), "
            f"engine class {b} ({got[index, b]:.4g})"
        )
    return "; ".join(shown)


@dataclass(frozen=True)
class TaskVerdict:
    """The task's figures, and what failed (empty: passed)."""

    report: AccuracyReport
    failures: list[str]
    worst: str


def judge_task(
    request: BuildRequest,
    elementwise: AccuracyReport,
    reference: Any,
    engine: Any,
    labels: Any | None,
) -> TaskVerdict:
    """Judge the engine's first output against fp32's on the gate's data set."""
    metric = gate_metric(request)
    update: dict[str, Any] = {"metric": metric, "samples": len(reference), "passed": True}
    failures: list[str] = []
    mask = np.ones(_scores(reference).shape[0], dtype=bool)
    if metric != AccuracyMetric.MAX_ABS:
        floor = DEFAULT_MIN_AGREEMENT if request.min_agreement is None else request.min_agreement
        if metric == AccuracyMetric.TOPK:
            k = request.top_k or DEFAULT_TOP_K
            share, mask = top_k_agreement(reference, engine, k)
            update["top_k"] = k
        else:
            share, mask = agreement(reference, engine)
        update |= {"agreement": share, "min_agreement": floor}
        if share < floor:
            failures.append(f"{metric} {share:.4f} < minAgreement {floor:g}")
    if labels is not None:
        drop = (
            DEFAULT_MAX_ACCURACY_DROP
            if request.max_accuracy_drop is None
            else request.max_accuracy_drop
        )
        base, got = accuracy(reference, labels), accuracy(engine, labels)
        update |= {
            "accuracy": got,
            "baseline_accuracy": base,
            "max_accuracy_drop": drop,
            "min_accuracy": request.min_accuracy,
        }
        if got < base - drop - 1e-12:
            failures.append(
                f"accuracy {got:.4f} vs fp32 {base:.4f}: drop {base - got:.4f} > "
                f"maxAccuracyDrop {drop:g}"
            )
        if request.min_accuracy is not None and got < request.min_accuracy:
            failures.append(f"accuracy {got:.4f} < minAccuracy {request.min_accuracy:g}")
    if failures:
        update["passed"] = False
    report = elementwise.model_copy(update=update)
    return TaskVerdict(report, failures, _worst(reference, engine, mask))
