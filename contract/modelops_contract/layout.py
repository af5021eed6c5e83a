"""The engine store's layout: where one entry's files live, and how an entry is named.

One entry per engine key, published atomically (written under a temporary name, renamed last;
on s3, engine.json is uploaded last and is the commit marker):

    <store>/<digest>/engine.json
    <store>/<digest>/repository/<model name>/config.pbtxt   ready-to-serve defaults
    <store>/<digest>/repository/<model name>/1/<file>       model.plan or model.onnx (+ model.py)

A Triton pod gets `repository/<model name>/1` and its own config.pbtxt, rendered by
`tritonconfig.render_model_config` from the manifest and the serving spec.
"""

from __future__ import annotations

from .key import key_digest

MANIFEST_NAME = "engine.json"
REPOSITORY_DIR = "repository"
VERSION_DIR = "1"


def entry_uri(store: str, key: str) -> str:
    """How status and summaries name an entry: `<store name>/<key digest>`.

    `store` is the store's name as the operator's settings give it (`pvc://CLAIM` or an s3://
    prefix), never a mount path inside one pod, so every path to an entry names it the same way.
    """
    return f"{store.rstrip('/')}/{key_digest(key)}"


def version_folder(model_name: str) -> str:
    """`repository/<model>/1`: the folder Triton loads, relative to the entry."""
    return f"{REPOSITORY_DIR}/{model_name}/{VERSION_DIR}"
