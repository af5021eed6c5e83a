"""TensorRT timing caches in the store: sealed, named by the operator, one per tenant.

A timing cache steers TensorRT's tactic choice and is fed to its builder, so it is treated as
code-adjacent data: the publishing step (MAC key) writes it under the name the request carries
(`_timing_cache/<namespace>/<gpu>-trt<version>.cache`, chosen by the operator from the
ModelDeployment's namespace, GPU and the chart's TensorRT), never a name the build's own
build.json suggests, with a seal beside it (`<name>.mac`, integrity.timing_cache_mac); the build
Job's `timing-cache` init container copies it for the build step only when the seal verifies.
A cache of one tenant never reaches another tenant's build.
"""

from __future__ import annotations

import hmac
import logging
import sys
from pathlib import Path

from modelops_contract import integrity
from modelops_contract.request import BuildRequest

from .errors import BuildError
from .seal import mac_key_from_env
from .store import Store, open_store

log = logging.getLogger(__name__)

SEAL_SUFFIX = ".mac"
MAX_CACHE_BYTES = 256 * 1024**2


def keep(store: Store, name: str, data: bytes, mac_key: bytes) -> None:
    """Write the cache and its seal (the seal last: a reader never trusts a cache without it)."""
    if len(data) > MAX_CACHE_BYTES:
        log.warning("timing cache of %d bytes not kept (over %d)", len(data), MAX_CACHE_BYTES)
        return
    seal = integrity.timing_cache_mac(mac_key, name, data)
    store.write_blob(name, data)
    store.write_blob(name + SEAL_SUFFIX, seal.encode())


def load(store: Store, name: str, mac_key: bytes) -> bytes | None:
    """The cache's bytes when its seal verifies; None when absent, unsealed or changed."""
    data, seal = store.read_blob(name), store.read_blob(name + SEAL_SUFFIX)
    if data is None:
        return None
    expected = integrity.timing_cache_mac(mac_key, name, data)
    if seal is None or not hmac.compare_digest(seal.decode(errors="replace").strip(), expected):
        log.warning("timing cache %s is not sealed by this store: not used", name)
        return None
    return data


def fetch_main(argv: list[str]) -> int:
    """`modelops-build timing-cache --request JSON --into DIR`: the build Job's init container
    copies the tenant's sealed cache (if any) for the build step; always exits 0 (a missing
    cache only slows the build)."""
    import argparse

    parser = argparse.ArgumentParser(prog="modelops-build timing-cache")
    parser.add_argument("--request", required=True, help="the build request (JSON)")
    parser.add_argument("--into", required=True, type=Path, help="the build step's cache folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    request = BuildRequest.model_validate_json(args.request)
    mac_key = mac_key_from_env()
    if request.timing_cache is None or mac_key is None:
        return 0
    try:
        data = load(open_store(request.store), request.timing_cache, mac_key)
    except BuildError as exc:
        log.warning("timing cache not read: %s", exc)
        return 0
    if data is not None:
        args.into.mkdir(parents=True, exist_ok=True)
        (args.into / Path(request.timing_cache).name).write_bytes(data)
        log.info("timing cache %s: %d bytes", request.timing_cache, len(data))
    return 0
