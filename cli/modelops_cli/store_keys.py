"""`modelops store-keys`: create the store's key Secret when it is missing, never change it.

The operator pod's init container runs it. The chart renders no keys: a template that made them
(even with Helm's `lookup`, which finds nothing outside a live install) got new random keys on
every `helm template | kubectl apply` or Argo CD sync, which invalidated every token and receipt
and rebuilt every engine. Here the Secret is created once, by a POST that fails with 409 when it
exists: whatever renders the chart, and however often, the keys stay. The Secret carries no
release or Argo CD tracking label, so neither Helm nor Argo CD owns or prunes it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import secrets
from typing import Any

from modelops_contract import integrity
from modelops_operator.k8s.client import Credentials, KubeClient
from modelops_operator.k8s.errors import ApiError, ConflictError
from modelops_operator.k8s.resources import Resource

logger = logging.getLogger(__name__)

SECRETS = Resource("", "v1", "secrets", "Secret")
KEY_BYTES = 36  # 48 URL-safe characters, as the chart's keys were


def new_keys() -> dict[str, str]:
    """Two fresh random keys, `mac` and `transfer`."""
    return {
        integrity.SECRET_MAC_KEY: secrets.token_urlsafe(KEY_BYTES),
        integrity.SECRET_TRANSFER_KEY: secrets.token_urlsafe(KEY_BYTES),
    }


def key_secret(namespace: str, name: str, keys: dict[str, str]) -> dict[str, Any]:
    """The Secret of the store's keys (labels that no release or GitOps tool tracks)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "modelops",
                "app.kubernetes.io/component": "store-key",
            },
            "annotations": {"modelops.dev/created-by": "modelops store-keys"},
        },
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in keys.items()},
    }


async def ensure_store_keys(client: KubeClient, namespace: str, name: str) -> bool:
    """Create Secret `name` with new keys unless it exists; True when this call created it."""
    try:
        await client.create(SECRETS, namespace, key_secret(namespace, name, new_keys()))
    except ConflictError:
        return False
    return True


def run_store_keys(args: argparse.Namespace) -> int:
    """Entry point: in-cluster credentials (the pod's ServiceAccount); 0 when the Secret exists
    afterwards, 1 when the API server refused."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    import kopf

    info = kopf.login_with_service_account(settings=kopf.OperatorSettings())
    if info is None:
        logger.error("no in-cluster credentials: run this as the operator pod's init container")
        return 1
    credentials = Credentials.from_connection_info(info)
    return asyncio.run(store_keys(credentials, args.namespace, args.secret))


async def store_keys(credentials: Credentials, namespace: str, name: str) -> int:
    """Ensure the Secret with these credentials; the exit code of `modelops store-keys`."""

    async def connect() -> Credentials:
        return credentials

    client = KubeClient(connect, retries=5, user_agent="modelops-store-keys")
    try:
        created = await ensure_store_keys(client, namespace, name)
    except ApiError as exc:
        logger.error("cannot create Secret %s/%s: %s", namespace, name, exc)
        return 1
    finally:
        await client.close()
    if created:
        logger.info("created Secret %s/%s with new store keys", namespace, name)
    else:
        logger.info("Secret %s/%s exists: its keys are kept", namespace, name)
    return 0
