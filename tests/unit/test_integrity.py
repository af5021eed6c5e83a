"""modelops_contract.integrity: the manifest's MAC and the transfer tokens, as properties."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelops_contract import integrity

KEY = b"k" * 40
OTHER = b"o" * 40

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**9), 10**9),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
manifests = st.dictionaries(
    st.text(min_size=1, max_size=12).filter(lambda k: k != "mac"), values, min_size=1, max_size=6
)


@given(manifests)
def test_a_published_manifest_verifies_and_reads_back_unchanged(data: dict[str, Any]) -> None:
    raw = integrity.signed_manifest_bytes(data, KEY)
    parsed = integrity.verify_manifest(raw, KEY)
    assert {k: v for k, v in parsed.items() if k != "mac"} == data


@given(manifests, st.data())
def test_any_change_to_a_published_manifest_is_refused(data: dict[str, Any], draw: Any) -> None:
    raw = integrity.signed_manifest_bytes(data, KEY)
    parsed = json.loads(raw)
    field = draw.draw(st.sampled_from(sorted(data)))
    changed = draw.draw(values.filter(lambda v: v != data[field]))
    parsed[field] = changed
    tampered = json.dumps(parsed).encode()
    with pytest.raises(integrity.IntegrityError, match="changed after publishing"):
        integrity.verify_manifest(tampered, KEY)


@given(manifests)
def test_another_key_or_no_mac_is_refused(data: dict[str, Any]) -> None:
    with pytest.raises(integrity.IntegrityError, match="changed after publishing"):
        integrity.verify_manifest(integrity.signed_manifest_bytes(data, OTHER), KEY)
    with pytest.raises(integrity.IntegrityError, match="carries no MAC"):
        integrity.verify_manifest(integrity.signed_manifest_bytes(data, None), KEY)


@pytest.mark.parametrize(
    ("raw", "words"),
    [(b"not json", "not JSON"), (b"[1, 2]", "not a JSON object"), (b'{"mac": 3}', "no MAC")],
)
def test_malformed_manifests_are_refused_with_a_reason(raw: bytes, words: str) -> None:
    with pytest.raises(integrity.IntegrityError, match=words):
        integrity.verify_manifest(raw, KEY)


def test_short_keys_are_refused() -> None:
    with pytest.raises(integrity.IntegrityError, match="at least 32"):
        integrity.key_bytes("short")
    assert integrity.key_bytes("  " + "x" * 32 + "\n") == b"x" * 32


HEX = st.from_regex(r"[0-9a-f]{64}", fullmatch=True)
UIDS = st.from_regex(r"[0-9a-f-]{8,36}", fullmatch=True)


@given(HEX, HEX, UIDS, UIDS)
def test_each_token_opens_exactly_its_scope(a: str, b: str, uid: str, other_uid: str) -> None:
    scopes = {
        integrity.entry_scope(a),
        integrity.source_put_scope(a, uid, "ml", keep=True, max_bytes=1, expires=2),
        integrity.source_get_scope(a, uid),
        integrity.receipt_scope(a, uid, kept=True),
        integrity.receipt_scope(a, uid, kept=False),
    }
    assert len(scopes) == 5, "no two doors share a scope"
    for scope in scopes:
        token = integrity.token(KEY, scope)
        assert integrity.token_valid(KEY, scope, token)
        assert not integrity.token_valid(OTHER, scope, token)
        assert all(not integrity.token_valid(KEY, s, token) for s in scopes - {scope})
    if a != b:
        assert not integrity.token_valid(
            KEY, integrity.entry_scope(b), integrity.token(KEY, integrity.entry_scope(a))
        )
    if uid != other_uid:
        mine = integrity.token(KEY, integrity.receipt_scope(a, uid, kept=True))
        assert not integrity.token_valid(
            KEY, integrity.receipt_scope(a, other_uid, kept=True), mine
        )
    assert not integrity.token_valid(KEY, integrity.entry_scope(a), None)
    assert not integrity.token_valid(KEY, integrity.entry_scope(a), "")
