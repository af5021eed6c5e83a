"""Findings 2 and 4 of issue 23: one tenant cannot fill the engine server's inbox or hold its
uploads, the terms of an upload are the token's, staged sources survive a restart, and a staged
source belongs to one ModelDeployment."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import aiohttp

from modelops_builder.inbox import Quotas
from modelops_contract import integrity
from modelops_contract.staging import OWNER_HEADER
from tests.support.engine_store import engine_server, get_source, put_source
from tests.support.inbox_attack import (
    inbox_bytes,
    p99,
    pull_latencies,
    sealed_entry,
    stalled_upload,
)

MB = 1 << 20
QUOTAS = Quotas(total_bytes=40 * MB, namespace_bytes=20 * MB, total_uploads=6, namespace_uploads=2)
LIMITS = {"quotas": QUOTAS, "read_timeout_seconds": 1.0, "min_upload_rate": 256 * 1024}


async def _put(url: str, token: str, body: bytes, owner: str) -> tuple[int, dict[str, object]]:
    headers = {"Authorization": f"Bearer {token}", OWNER_HEADER: owner}
    async with (
        aiohttp.ClientSession() as session,
        session.put(url, data=body, headers=headers) as answer,
    ):
        return answer.status, await answer.json()


async def test_finding_2_stalled_uploads_cannot_fill_the_inbox_or_starve_other_tenants(
    tmp_path: Path,
) -> None:
    store, inbox = tmp_path / "store", tmp_path / "inbox"
    digest, token = sealed_entry(store)
    async with engine_server(store, inbox, max_source_bytes=64 * MB, **LIMITS) as url:
        # five uploads of one tenant, 8 MB of wrong bytes each, then silence (its own tokens)
        attack = [stalled_upload(url, "evil", f"uid-{i}", 8 * MB, hold=10.0) for i in range(5)]
        pulls = pull_latencies(url, digest, token, seconds=3.0)

        async def peak() -> int:
            most = 0
            for _ in range(30):
                most = max(most, inbox_bytes(inbox))
                await asyncio.sleep(0.1)
            return most

        *stalled, latencies, held = await asyncio.gather(*attack, pulls, peak())
        # a healthy tenant's source is kept meanwhile, within its own quota
        body = os.urandom(MB)
        sha = integrity.sha256_hex(body)
        where, put = put_source(url, sha, "uid-ok", namespace="ml")
        status, answer = await _put(where, put, body, "uid-ok")
    statuses = sorted(s.status for s in stalled)
    # two uploads (the tenant's slots) were taken and cut for stalling; three refused at once
    assert statuses == [408, 408, 429, 429, 429], statuses
    refused = [s for s in stalled if s.status == 429]
    assert all(s.seconds < 1.0 for s in refused)
    cut = [s for s in stalled if s.status == 408]
    assert all(s.seconds < 5.0 for s in cut), "a stalled upload is cut within its read timeout"
    assert held <= QUOTAS.namespace_bytes, held
    assert inbox_bytes(inbox) == MB, "nothing of the attack stays; the healthy source does"
    # the other tenant's pulls all succeeded, quickly
    assert latencies
    assert p99(latencies) < 1.0, latencies
    assert (status, answer["kept"]) == (200, True)


async def test_finding_2_quotas_are_checked_before_a_byte_is_written(tmp_path: Path) -> None:
    async with engine_server(tmp_path / "s", tmp_path / "inbox", **LIMITS) as url:
        sha = "ab" * 32
        where, put = put_source(url, sha, "uid-1", namespace="evil")
        # a declared length over the tenant's quota is refused before the body is read
        stalled = await stalled_upload(url, "evil", "uid-2", 0, hold=5.0, declared=21 * MB)
        assert stalled.status == 507
        assert stalled.seconds < 1.0
        assert inbox_bytes(tmp_path / "inbox") == 0
        status, _ = await _put(where, put, os.urandom(10), "uid-1")
        assert status == 400  # wrong bytes: a checksum answer, and still nothing written
        assert inbox_bytes(tmp_path / "inbox") == 0


async def test_finding_2_keep_size_namespace_and_expiry_are_the_tokens(tmp_path: Path) -> None:
    body = os.urandom(4096)
    sha = integrity.sha256_hex(body)
    async with engine_server(tmp_path / "s", tmp_path / "inbox", **LIMITS) as url:
        where, put = put_source(url, sha, "uid-1", keep=False, max_bytes=8192)
        for changed in (
            where.replace("keep=0", "keep=1"),
            where.replace("max=8192", "max=99999999"),
            where.replace("ns=team-a", "ns=other"),
            where.replace("expires=", "expires=9"),
        ):
            status, answer = await _put(changed, put, body, "uid-1")
            assert (status, answer["reason"]) == (403, "Forbidden"), changed
        late, expired = put_source(url, sha, "uid-1", expires=int(time.time()) - 1)
        status, answer = await _put(late, expired, body, "uid-1")
        assert (status, answer["reason"]) == (403, "TokenExpired")
        small, token = put_source(url, sha, "uid-1", max_bytes=100)
        status, answer = await _put(small, token, body, "uid-1")
        assert (status, answer["reason"]) == (413, "SourceTooLarge")
        status, _ = await _put(where, put, body, "uid-1")
        assert status == 200


async def test_finding_2_staged_sources_survive_a_restart_and_still_count(tmp_path: Path) -> None:
    store, inbox = tmp_path / "s", tmp_path / "inbox"
    body = os.urandom(15 * MB)
    sha = integrity.sha256_hex(body)
    async with engine_server(store, inbox, **LIMITS) as url:
        where, put = put_source(url, sha, "uid-1", namespace="ml")
        assert (await _put(where, put, body, "uid-1"))[0] == 200
    async with engine_server(store, inbox, **LIMITS) as url:
        staged, get = get_source(url, sha, "uid-1")
        headers = {"Authorization": f"Bearer {get}"}
        async with (
            aiohttp.ClientSession() as session,
            session.get(staged, headers=headers) as resp,
        ):
            assert resp.status == 200
            assert await resp.read() == body
        # what the restarted server holds counts against the tenant's quota
        more = os.urandom(6 * MB)
        where, put = put_source(url, integrity.sha256_hex(more), "uid-2", namespace="ml")
        status, answer = await _put(where, put, more, "uid-2")
        assert (status, answer["reason"]) == (507, "InboxQuotaExceeded")


async def test_finding_4_a_token_for_another_build_of_the_same_sha_cannot_touch_it(
    tmp_path: Path,
) -> None:
    body = os.urandom(4096)
    sha = integrity.sha256_hex(body)
    async with engine_server(tmp_path / "s", tmp_path / "inbox", **LIMITS) as url:
        for owner, namespace in (("victim", "ml"), ("attacker", "evil")):
            where, put = put_source(url, sha, owner, namespace=namespace)
            assert (await _put(where, put, body, owner))[0] == 200
        victim_url, victim_get = get_source(url, sha, "victim")
        _, attacker_get = get_source(url, sha, "attacker")
        async with aiohttp.ClientSession() as session:

            async def call(method: str, target: str, token: str) -> int:
                headers = {"Authorization": f"Bearer {token}"}
                async with session.request(method, target, headers=headers) as resp:
                    await resp.read()
                    return resp.status

            # the attacker's token (the same public sha256) opens nothing of the victim's
            assert await call("DELETE", victim_url, attacker_get) == 403
            assert await call("GET", victim_url, attacker_get) == 403
            attacker_url = victim_url.replace("owner=victim", "owner=attacker")
            assert await call("DELETE", attacker_url, attacker_get) == 200
            assert await call("GET", victim_url, victim_get) == 200
