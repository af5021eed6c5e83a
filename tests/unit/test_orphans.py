"""Which build Jobs in the operator's namespace lost their ModelDeployment (decide/orphans.py)."""

from __future__ import annotations

from typing import Any

import pytest

from modelops_operator.decide.orphans import Owner, orphaned, owner_of
from modelops_operator.render.common import (
    ANNOTATION_OWNER_NAME,
    ANNOTATION_OWNER_UID,
    LABEL_COMPONENT,
    LABEL_MANAGED_BY,
    LABEL_OWNER_NAMESPACE,
    MANAGED_BY,
)


def job(
    name: str,
    owner: tuple[str, str, str] | None = ("ml", "m", "uid-1"),
    *,
    component: str = "build",
    managed_by: str = MANAGED_BY,
) -> dict[str, Any]:
    labels = {LABEL_MANAGED_BY: managed_by, LABEL_COMPONENT: component}
    annotations: dict[str, str] = {}
    if owner is not None:
        labels[LABEL_OWNER_NAMESPACE] = owner[0]
        annotations = {ANNOTATION_OWNER_NAME: owner[1], ANNOTATION_OWNER_UID: owner[2]}
    return {"metadata": {"name": name, "labels": labels, "annotations": annotations}}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (job("a"), ("ml", "m", "uid-1")),
        (job("no-owner", None), None),
        (job("validate", component="validate"), None),
        (job("someone-elses", managed_by="helm"), None),
        ({"metadata": {}}, None),
    ],
)
def test_owner_of(obj: dict[str, Any], expected: Owner | None) -> None:
    assert owner_of(obj) == expected


def test_only_jobs_of_owners_that_are_gone_are_orphans() -> None:
    alive = {("ml", "m", "uid-1")}
    jobs = [
        job("kept"),
        job("recreated", ("ml", "m", "uid-0")),  # same name, an older object: gone
        job("deleted", ("ml", "other", "uid-2")),
        job("unowned", None),  # names no owner: never ours to delete
        job("foreign", ("ml", "x", "uid-3"), managed_by="helm"),
    ]
    names = [o["metadata"]["name"] for o in orphaned(jobs, lambda owner: owner in alive)]
    assert names == ["recreated", "deleted"]
