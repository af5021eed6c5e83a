"""Reading serving pods: which ones count, and where their metrics pages are."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from ..k8s.observe import replica_set_pod
from ..render.common import LABEL_NAME, LABEL_REVISION, ROUTER_APP
from ..render.haproxy import AGENT_PORT
from ..render.names import revision_name
from ..render.revision import METRICS_PORT

Pod = Mapping[str, Any]
# Where a pod's metrics page is; None when the pod has no address yet.
MetricsUrl = Callable[[Pod], str | None]


class PodSource(Protocol):
    """Where pods come from: the watch-fed cache (k8s.observe.Observer.pods), never a LIST."""

    def pods(self, namespace: str, name: str) -> Sequence[Pod]:
        """The pods labelled for a ModelDeployment."""
        ...


def default_metrics_url(pod: Pod) -> str | None:
    """Triton's `http://<podIP>:8002/metrics`, or a router pod's agent on port 8405."""
    ip = (pod.get("status") or {}).get("podIP")
    if not ip:
        return None
    host = f"[{ip}]" if ":" in str(ip) else str(ip)
    router = ((pod.get("metadata") or {}).get("labels") or {}).get(LABEL_NAME) == ROUTER_APP
    return f"http://{host}:{AGENT_PORT if router else METRICS_PORT}/metrics"


def pod_ready(pod: Pod) -> bool:
    """Ready=True and not terminating."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def ready_revision_pods(
    source: PodSource, namespace: str, name: str, revisions: set[int]
) -> list[Pod]:
    """Ready pods of these revisions that the revisions' ReplicaSets made."""
    wanted = {str(n) for n in revisions}
    found: list[Pod] = []
    for pod in source.pods(namespace, name):
        revision = ((pod.get("metadata") or {}).get("labels") or {}).get(LABEL_REVISION)
        # Labels are a filter; only pods the revision's ReplicaSet made are read.
        if (
            revision in wanted
            and pod_ready(pod)
            and replica_set_pod(pod, revision_name(name, int(revision)))
        ):
            found.append(pod)
    return found
