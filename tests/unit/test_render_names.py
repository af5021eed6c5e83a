"""Child names: valid DNS-1123 (Services: DNS-1035) labels, <= 63 characters, stable, distinct."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelops_operator.render.names import (
    build_job_name,
    label_value,
    revision_name,
    revision_of,
    service_name,
    source_job_name,
)

KEY = "sha256:" + "0123456789abcdef" * 4
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")

label = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)
md_names = st.lists(label, min_size=1, max_size=12).map(".".join).filter(lambda n: len(n) <= 253)


def test_short_names_are_kept_as_they_are() -> None:
    assert service_name("resnet") == "resnet"
    assert revision_name("resnet", 3) == "resnet-r3"
    assert source_job_name("resnet", KEY) == "resnet-source-0123456789"
    assert build_job_name("ml", "resnet", KEY).startswith("ml-resnet-")
    assert build_job_name("ml", "resnet", KEY).endswith("-build-0123456789")
    assert label_value("resnet") == "resnet"
    assert revision_of("resnet-r12") == 12
    assert revision_of("resnet") is None


@pytest.mark.parametrize("name", ["a" * 63, "a" * 64, "x" * 253, "1model", "my.model.v2"])
def test_awkward_names_are_hashed_into_valid_ones(name: str) -> None:
    for child in (
        service_name(name),
        revision_name(name, 1234),
        build_job_name(name, name, KEY),
        source_job_name(name, KEY),
    ):
        assert len(child) <= 63
        assert DNS1035.match(child), child


@given(md_names, st.integers(0, 10**6))
def test_names_are_valid_bounded_and_stable(name: str, revision: int) -> None:
    for make in (
        lambda: service_name(name),
        lambda: revision_name(name, revision),
        lambda: build_job_name("ml", name, KEY),
        lambda: source_job_name(name, KEY),
    ):
        child = make()
        assert len(child) <= 63
        assert DNS1123.match(child)
        assert DNS1035.match(child)
        assert make() == child
    assert revision_of(revision_name(name, revision)) == revision
    value = label_value(name)
    assert len(value) <= 63
    assert LABEL_VALUE.match(value)


@given(md_names, md_names)
def test_different_names_never_share_children(a: str, b: str) -> None:
    if a != b:
        assert service_name(a) != service_name(b)
        assert revision_name(a, 1) != revision_name(b, 1)
        assert label_value(a) != label_value(b)
        assert source_job_name(a, KEY) != source_job_name(b, KEY)


@given(md_names, md_names, md_names, md_names)
def test_build_jobs_of_two_owners_never_share_a_name(ns_a: str, a: str, ns_b: str, b: str) -> None:
    # Build Jobs of every namespace meet in the operator's: (namespace, name) must not collide,
    # not even for "ml" + "a-b" and "ml-a" + "b".
    if (ns_a, a) != (ns_b, b):
        assert build_job_name(ns_a, a, KEY) != build_job_name(ns_b, b, KEY)
    assert build_job_name("ml", "a-b", KEY) != build_job_name("ml-a", "b", KEY)
