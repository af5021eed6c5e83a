"""The watch-fed child cache (k8s/cache.py): indexes, newer-wins, a DELETED of an older object."""

from __future__ import annotations

from typing import Any

import pytest

from modelops_operator.k8s.cache import ChildCache, deep_size, newer_or_same
from modelops_operator.k8s.resources import JOBS, PODS
from modelops_operator.k8s.trim import trim

Obj = dict[str, Any]


def obj(name: str, version: str, uid: str = "u1", owner: str = "md-1", label: str = "m") -> Obj:
    """A child object controlled by `owner`."""
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": uid,
            "resourceVersion": version,
            "labels": {"modelops.dev/deployment": label},
            "ownerReferences": [{"uid": owner, "controller": True}],
            "managedFields": [{"manager": "kube"}],
        },
        "spec": {"big": "x" * 100},
        "status": {},
    }


def test_indexes_by_owner_and_label_and_follows_updates() -> None:
    cache = ChildCache([JOBS])
    jobs = cache.kind(JOBS)
    assert cache.observed(JOBS, obj("a", "5"))
    assert cache.observed(JOBS, obj("b", "6", uid="u2", owner="md-2", label="n"))
    assert [j["metadata"]["name"] for j in jobs.owned("md-1")] == ["a"]
    assert [j["metadata"]["name"] for j in jobs.labelled("ns", "n")] == ["b"]
    assert "managedFields" not in jobs.owned("md-1")[0]["metadata"]
    # A late event of an older version never undoes a newer one (our write's response).
    assert not cache.observed(JOBS, obj("a", "4"))
    assert jobs.get("ns", "a")["metadata"]["resourceVersion"] == "5"  # type: ignore[index]
    # The owner changed: the old index entry goes.
    assert cache.observed(JOBS, obj("a", "7", owner="md-3"))
    assert jobs.owned("md-1") == []
    assert [j["metadata"]["name"] for j in jobs.owned("md-3")] == ["a"]


def test_deleted_event_of_a_replaced_object_keeps_the_new_one() -> None:
    cache = ChildCache([JOBS])
    cache.observed(JOBS, obj("a", "5", uid="new"))
    assert not cache.deleted(JOBS, obj("a", "3", uid="old"))
    assert cache.kind(JOBS).get("ns", "a") is not None
    assert cache.deleted(JOBS, obj("a", "5", uid="new"))
    assert cache.kind(JOBS).owned("md-1") == []
    assert cache.counts() == {"jobs": 0}


def test_pods_are_kept_without_spec_and_sizes_are_measured() -> None:
    cache = ChildCache([PODS])
    cache.observed(PODS, obj("p", "1"))
    assert "spec" not in cache.kind(PODS).get("ns", "p")  # type: ignore[operator]
    assert cache.size_bytes() == deep_size(cache.kind(PODS).get("ns", "p"))
    assert not ChildCache([]).observed(PODS, obj("p", "1")), "an unwatched kind is not kept"


def at(version: str | None) -> Obj:
    return {"metadata": {} if version is None else {"resourceVersion": version}}


@pytest.mark.parametrize(
    ("incoming", "cached", "expected"),
    [
        ("10", "9", True),
        ("9", "10", False),  # as strings "9" > "10": compared as numbers
        ("1000", "1000", True),
        ("99", "100", False),
        ("12345678901234", "12345678901233", True),
        (None, "5", True),  # no version: cannot tell, keep the incoming
        ("5", None, True),
        ("opaque", "5", True),  # not a number: cannot tell
        ("5", "opaque", True),
        ("", "5", True),
    ],
)
def test_newer_or_same_fixed_cases(
    incoming: str | None, cached: str | None, expected: bool
) -> None:
    assert newer_or_same(at(incoming), at(cached)) is expected


def test_trim_drops_kubectl_copy_and_managed_fields() -> None:
    o = obj("a", "1")
    o["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
        "keep": "1",
    }
    trimmed = trim("deployments", o)
    assert trimmed["metadata"]["annotations"] == {"keep": "1"}
    assert "managedFields" not in trimmed["metadata"]
    assert o["metadata"]["managedFields"], "the input is not changed"
