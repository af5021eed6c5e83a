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


# Fixed vectors, each checked outside Python with
# `printf '%s' SCOPE_OR_BYTES | openssl dgst -sha256 -hmac kkkk...` (32 times "k"): the scope
# strings and the MAC's canonical bytes are a format the engine server, the builder and the
# operator share, so they are pinned, not recomputed.
VECTOR_KEY = b"k" * 32
SHA = "ab" * 32
TOKEN_VECTORS = [
    (integrity.receipt_scope(SHA, "uid-1", kept=True), f"receipt:kept:{SHA}:uid-1"),
    (integrity.receipt_scope(SHA, "uid-1", kept=False), f"receipt:seen:{SHA}:uid-1"),
    (integrity.entry_scope("cd" * 32), "entry:" + "cd" * 32),
    (
        integrity.source_put_scope(SHA, "uid-1", "ml", keep=True, max_bytes=1024, expires=99),
        f"source-put:{SHA}:uid-1:ml:1:1024:99",
    ),
    (integrity.source_get_scope(SHA, "uid-1"), f"source-get:{SHA}:uid-1"),
    (integrity.route_scope("ml", "resnet"), "route:ml/resnet"),
]


@pytest.mark.parametrize(("scope", "written"), TOKEN_VECTORS)
def test_scope_formats_are_fixed(scope: str, written: str) -> None:
    assert scope == written


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        (
            f"receipt:kept:{SHA}:uid-1",
            "d6d18883a6e9c231b328652e45a0ae452a7820dd5b7ebb070edb5879845ac9ba",
        ),
        ("entry:" + "cd" * 32, "86775da4b82a68f6f70fed907684e7d795fa20933f5cca5d2c8688e6d4ed86b3"),
        ("route:ml/resnet", "893a035fea870daee099e2feb899d644b8b0295bf7def58f6a49cdbfdefd7e03"),
    ],
)
def test_token_fixed_vectors(scope: str, expected: str) -> None:
    assert integrity.token(VECTOR_KEY, scope) == expected
    assert integrity.token_valid(VECTOR_KEY, scope, expected)


def test_manifest_mac_fixed_vector() -> None:
    manifest = {"key": "sha256:" + "0" * 64, "engine": "onnxruntime", "files": []}
    canonical = b'{"engine":"onnxruntime","files":[],"key":"sha256:' + b"0" * 64 + b'"}'
    mac = "a0f70d579dda60c3b0b00896a17da0b1e14a1a9d5ca5690f3c892b0f8bd1dde6"
    assert integrity.canonical_bytes({**manifest, "mac": "ignored"}) == canonical
    assert integrity.manifest_mac(VECTOR_KEY, manifest) == mac
    published = integrity.signed_manifest_bytes(manifest, VECTOR_KEY)
    assert published == (
        b'{\n  "engine": "onnxruntime",\n  "files": [],\n  "key": "sha256:'
        + b"0" * 64
        + b'",\n  "mac": "'
        + mac.encode()
        + b'"\n}\n'
    )
    assert integrity.verify_manifest(published, VECTOR_KEY)["mac"] == mac
