"""Watch-fed caches of the children: what a reconcile reads instead of LISTing the API server.

kopf's watch streams (one LIST then WATCH per kind, per namespace or cluster-wide; re-listed on
410 Gone, restarted when they stop) feed `ChildCache` through handlers/children.py. Every
object is indexed by its controller ownerReference's UID and by its `modelops.dev/deployment`
label, so a reconcile finds its children with two dict look-ups. Our own writes are put in at
once (write-through) so the next reconcile never misses what this process just created; the
newer resourceVersion wins when a watch event and a write response cross.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..render.common import LABEL_DEPLOYMENT
from .resources import Resource
from .trim import trim

JsonDict = dict[str, Any]
ObjectKey = tuple[str, str]  # (namespace, name)


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    """The UID of the object's controller ownerReference, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("uid"):
            return str(ref["uid"])
    return None


def _version(obj: Mapping[str, Any]) -> int | None:
    raw = (obj.get("metadata") or {}).get("resourceVersion")
    return int(raw) if isinstance(raw, str) and raw.isdigit() else None


def newer_or_same(incoming: Mapping[str, Any], cached: Mapping[str, Any]) -> bool:
    """False only when both resourceVersions are numbers and the incoming one is older.

    resourceVersions are opaque to clients; every API server in use makes them etcd revisions,
    so comparing them as numbers is what keeps a late watch event from undoing a newer write.
    """
    new, old = _version(incoming), _version(cached)
    return new is None or old is None or new >= old


@dataclass
class KindCache:
    """The objects of one kind, by key, by controller UID and by deployment label."""

    objects: dict[ObjectKey, JsonDict] = field(default_factory=dict)
    by_owner: dict[str, set[ObjectKey]] = field(default_factory=dict)
    by_label: dict[tuple[str, str], set[ObjectKey]] = field(default_factory=dict)

    def get(self, namespace: str, name: str) -> JsonDict | None:
        """One object, or None."""
        return self.objects.get((namespace, name))

    def owned(self, uid: str) -> list[JsonDict]:
        """Objects whose controller is `uid`."""
        return [self.objects[k] for k in sorted(self.by_owner.get(uid, ()))]

    def labelled(self, namespace: str, label: str) -> list[JsonDict]:
        """Objects of a namespace labelled `modelops.dev/deployment=<label>`."""
        return [self.objects[k] for k in sorted(self.by_label.get((namespace, label), ()))]

    def put(self, obj: JsonDict) -> bool:
        """Store `obj` unless the cached one is newer; True when stored."""
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        old = self.objects.get(key)
        if old is not None:
            if not newer_or_same(obj, old):
                return False
            self._unindex(key, old)
        self.objects[key] = obj
        self._index(key, obj)
        return True

    def remove(self, obj: Mapping[str, Any]) -> bool:
        """Drop the object of `obj`'s key, unless the cached one is another object (new uid)."""
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        old = self.objects.get(key)
        if old is None:
            return False
        old_uid = (old.get("metadata") or {}).get("uid")
        if meta.get("uid") and old_uid and old_uid != meta.get("uid"):
            return False  # a DELETED event of the previous object of this name
        del self.objects[key]
        self._unindex(key, old)
        return True

    def _index(self, key: ObjectKey, obj: Mapping[str, Any]) -> None:
        owner = controller_uid(obj)
        if owner:
            self.by_owner.setdefault(owner, set()).add(key)
        label = ((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_DEPLOYMENT)
        if label:
            self.by_label.setdefault((key[0], str(label)), set()).add(key)

    def _unindex(self, key: ObjectKey, obj: Mapping[str, Any]) -> None:
        owner = controller_uid(obj)
        if owner:
            _discard(self.by_owner, owner, key)
        label = ((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_DEPLOYMENT)
        if label:
            _discard(self.by_label, (key[0], str(label)), key)


def _discard(index: dict[Any, set[ObjectKey]], at: Any, key: ObjectKey) -> None:
    keys = index.get(at)
    if keys is not None:
        keys.discard(key)
        if not keys:
            del index[at]


class ChildCache:
    """One KindCache per watched child kind; each object trimmed to what the operator reads
    (k8s/trim.py)."""

    def __init__(self, resources: Iterable[Resource]) -> None:
        self._kinds = {res.plural: KindCache() for res in resources}

    def kind(self, resource: Resource) -> KindCache:
        """The cache of one kind (an empty one for a kind that is not watched)."""
        return self._kinds.get(resource.plural) or KindCache()

    def watched(self, resource: Resource) -> bool:
        """Whether this kind is cached at all."""
        return resource.plural in self._kinds

    def observed(self, resource: Resource, obj: Mapping[str, Any]) -> bool:
        """A watch event's or a write's object (newer wins); True when stored."""
        cache = self._kinds.get(resource.plural)
        if cache is None:
            return False
        return cache.put(trim(resource.plural, obj))

    def deleted(self, resource: Resource, obj: Mapping[str, Any]) -> bool:
        """A DELETED event, or a delete this process made; True when something was dropped."""
        cache = self._kinds.get(resource.plural)
        return cache.remove(obj) if cache is not None else False

    def counts(self) -> dict[str, int]:
        """Objects cached per kind."""
        return {plural: len(cache.objects) for plural, cache in self._kinds.items()}

    def size_bytes(self) -> int:
        """Deep size of every cached object (the indexes excluded): what caching costs."""
        return sum(
            deep_size(obj) for cache in self._kinds.values() for obj in cache.objects.values()
        )


def deep_size(obj: Any) -> int:
    """sys.getsizeof over a JSON-like tree (strings shared by interning count each time)."""
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_size(k) + deep_size(v) for k, v in obj.items())
    elif isinstance(obj, list):
        size += sum(deep_size(v) for v in obj)
    return size
