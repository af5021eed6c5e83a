"""A snapshot reduced to what `kubectl modelops get` shows (pure): the `-o json` document,
which the tree is drawn from."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from modelops_operator.decide.clock import parse_time
from modelops_operator.decide.steering import read_steering
from modelops_operator.render.common import (
    ANNOTATION_ENGINE_KEY,
    ANNOTATION_MANIFEST_SHA256,
    ANNOTATION_RETRY,
    ANNOTATION_ROLLBACK_TO,
    LABEL_COMPONENT,
    LABEL_NAME,
    LABEL_REVISION,
    ROUTER_APP,
    TRITON_APP,
)
from modelops_operator.render.names import revision_of

from .snapshot import Snapshot

Obj = dict[str, Any]


def age(since: str | None, now: datetime) -> str:
    """kubectl's short age: 45s, 12m, 3h, 2d."""
    moment = parse_time(since)
    if moment is None:
        return "-"
    seconds = max(0, int((now - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def duration(job: Obj | None) -> float | None:
    """Seconds a Job ran (startTime to completionTime), None while it runs."""
    status = (job or {}).get("status") or {}
    start, end = parse_time(status.get("startTime")), parse_time(status.get("completionTime"))
    return (end - start).total_seconds() if start and end else None


def job_state(job: Obj) -> str:
    """Complete, Failed or Running, from the Job's conditions."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            return str(cond["type"])
    return "Running"


def _stage(kind: str, job: Obj | None, note: str = "") -> Obj:
    if job is None:
        return {"stage": kind, "job": None, "state": None, "seconds": None, "note": note}
    return {
        "stage": kind,
        "job": job["metadata"]["name"],
        "state": job_state(job),
        "seconds": duration(job),
        "note": note,
    }


def pod_row(pod: Obj, now: datetime) -> Obj:
    """name, ready, restarts, node, last termination reason, age."""
    status = pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    last = [
        ((c.get("lastState") or {}).get("terminated") or {}).get("reason")
        for c in containers
        if (c.get("lastState") or {}).get("terminated")
    ]
    waiting = [
        (c.get("state") or {}).get("waiting", {}).get("reason")
        for c in containers
        if (c.get("state") or {}).get("waiting")
    ]
    return {
        "name": pod["metadata"]["name"],
        "ready": all(c.get("ready") for c in containers) and bool(containers),
        "restarts": sum(int(c.get("restartCount") or 0) for c in containers),
        "node": (pod.get("spec") or {}).get("nodeName") or status.get("hostIP") or "-",
        "lastTermination": last[0] if last else None,
        "waiting": waiting[0] if waiting else None,
        "age": age(pod["metadata"].get("creationTimestamp"), now),
    }


def _entry(status: Obj, number: int) -> Obj:
    return next((h for h in status.get("history") or [] if h["revision"] == number), {})


def _revision_state(number: int, status: Obj) -> str:
    revision = status.get("revision") or {}
    if number == revision.get("candidate"):
        return "candidate"
    if number == revision.get("current"):
        return "current"
    return str(_entry(status, number).get("state") or "unknown")


def revisions(snapshot: Snapshot) -> list[Obj]:
    """Each revision with a Deployment, newest first, with its weight, pods and validation."""
    status = snapshot.md.get("status") or {}
    weights = {
        w["revision"]: w["weight"] for w in (status.get("traffic") or {}).get("weights") or []
    }
    validation = status.get("validation") or {}
    rows = []
    for dep in snapshot.deployments:
        labels = dep["metadata"].get("labels") or {}
        number = revision_of(dep["metadata"]["name"])
        if labels.get(LABEL_NAME) != TRITON_APP or number is None:
            continue
        pods = [
            pod_row(p, snapshot.now)
            for p in snapshot.pods
            if (p["metadata"].get("labels") or {}).get(LABEL_REVISION) == str(number)
            and (p["metadata"].get("labels") or {}).get(LABEL_NAME) == TRITON_APP
        ]
        checked = None
        if validation.get("revision") == number:
            checked = {
                "passed": validation.get("passed"),
                "maxAbsError": validation.get("maxAbsError"),
                "message": validation.get("message"),
            }
        rows.append(
            {
                "revision": number,
                "state": _revision_state(number, status),
                "weight": weights.get(number),
                "ready": int((dep.get("status") or {}).get("readyReplicas") or 0),
                "desired": int((dep.get("spec") or {}).get("replicas") or 0),
                "engineJson": (dep["metadata"].get("annotations") or {}).get(
                    ANNOTATION_MANIFEST_SHA256, ""
                )[:12]
                or None,
                "signature": _entry(status, number).get("signature"),
                "validation": checked,
                "pods": sorted(pods, key=lambda p: p["name"]),
            }
        )
    return sorted(rows, key=lambda r: -r["revision"])


def _analysis(md: Obj) -> Obj | None:
    status, spec = md.get("status") or {}, md.get("spec") or {}
    progress = status.get("rollout")
    candidate = (status.get("revision") or {}).get("candidate")
    if candidate is None or progress is None:
        return None
    canary = (spec.get("rollout") or {}).get("canary") or {}
    steps = list(canary.get("steps") or [100])
    index = min(int(progress.get("step") or 0), len(steps) - 1)
    ready: Obj = next((c for c in status.get("conditions") or [] if c["type"] == "RolledOut"), {})
    return {
        "revision": candidate,
        "step": f"{index + 1}/{len(steps)} ({steps[index]}%)",
        "validated": bool(progress.get("validated")),
        "passes": int(progress.get("passes") or 0),
        "failures": int(progress.get("failures") or 0),
        "failureThreshold": canary.get("failureThreshold"),
        "lastAnalysis": progress.get("note"),
        "message": ready.get("message"),
    }


def _idle(idle: Obj | None, now: datetime) -> Obj | None:
    """Scale to zero: how long ago it slept and woke, and the last cold start."""
    if not idle:
        return None
    return {
        "since": age(idle.get("since"), now) if idle.get("since") else None,
        "wokeAt": age(idle.get("wokeAt"), now) if idle.get("wokeAt") else None,
        "coldStartSeconds": idle.get("coldStartSeconds"),
    }


def _built_here(job: Obj | None, engine: Obj) -> bool:
    """Whether the kept build Job built the engine in status (else it came from the store)."""
    annotations = ((job or {}).get("metadata") or {}).get("annotations") or {}
    return bool(engine.get("key")) and annotations.get(ANNOTATION_ENGINE_KEY) == engine["key"]


def describe(snapshot: Snapshot) -> Obj:
    """The document `get -o json` prints and the tree shows."""
    md, now = snapshot.md, snapshot.now
    meta, spec, status = md["metadata"], md.get("spec") or {}, md.get("status") or {}
    engine = status.get("engine") or {}
    built: Obj = next((c for c in status.get("conditions") or [] if c["type"] == "EngineBuilt"), {})
    source_jobs = sorted(
        (
            j
            for j in snapshot.jobs
            if (j["metadata"].get("labels") or {}).get(LABEL_COMPONENT) == "source"
        ),
        key=lambda j: str(j["metadata"].get("creationTimestamp") or ""),
    )
    annotations = meta.get("annotations") or {}
    steering = read_steering(annotations)
    return {
        "name": meta["name"],
        "namespace": meta.get("namespace"),
        "phase": status.get("phase", "Pending"),
        "message": status.get("message"),
        "model": ((spec.get("model") or {}).get("source") or {}).get("uri"),
        "age": age(meta.get("creationTimestamp"), now),
        "generation": meta.get("generation"),
        "observedGeneration": status.get("observedGeneration"),
        "engine": {
            "key": engine.get("key"),
            "engine": engine.get("engine") or (spec.get("build") or {}).get("engine"),
            "precision": engine.get("precision") or (spec.get("build") or {}).get("precision"),
            "built": built.get("status"),
            "reason": built.get("reason"),
            "message": built.get("message"),
            "from": "build Job" if _built_here(snapshot.build_job, engine) else "from the store",
            "maxAbsError": (engine.get("accuracy") or {}).get("maxAbsError"),
            "latencyMs": engine.get("latencyMs"),
            "throughput": engine.get("throughput"),
            "uri": engine.get("uri"),
            "stages": [
                _stage("source", source_jobs[-1] if source_jobs else None),
                _stage("build", snapshot.build_job, snapshot.build_note),
            ],
        },
        "revisions": revisions(snapshot),
        "router": [
            pod_row(p, now)
            for p in snapshot.pods
            if (p["metadata"].get("labels") or {}).get(LABEL_NAME) == ROUTER_APP
        ],
        "traffic": status.get("traffic"),
        "analysis": _analysis(md),
        "metrics": status.get("metrics"),
        "autoscaler": status.get("lastScale"),
        "idle": _idle(status.get("idle"), now),
        "steering": {
            "promote": steering.promote,
            "abort": steering.abort,
            "pause": steering.pause,
            "weight": list(steering.weight) if steering.weight else None,
            "retry": annotations.get(ANNOTATION_RETRY),
            "rollbackTo": annotations.get(ANNOTATION_ROLLBACK_TO),
        },
        "events": [
            {
                "age": age(e.get("lastTimestamp") or e.get("eventTime"), now),
                "type": e.get("type"),
                "reason": e.get("reason"),
                "message": e.get("message"),
            }
            for e in snapshot.events
        ],
    }
