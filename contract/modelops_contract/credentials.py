"""The model source's credentials: which Secret keys a user may provide, and the env names they
reach the build Job under.

`spec.model.source.credentialsSecret` names a Secret in the user's namespace. Only the keys listed
here are read from it, each mapped (with `secretKeyRef`, never `envFrom`) to an env name under
`MODELOPS_SOURCE_`. Only the builder's fetch step reads those names, so a user's Secret can
neither reach the store's client (which reads the standard `AWS_*` variables of the store's own
Secret) nor change the builder's own settings (termination log, work dir, store, proxies).
"""

from __future__ import annotations

from collections.abc import Mapping

SOURCE_ENV_PREFIX = "MODELOPS_SOURCE_"

AWS_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
AWS_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"  # noqa: S105 - a key name, not a secret
AWS_SESSION_TOKEN = "AWS_SESSION_TOKEN"  # noqa: S105 - a key name, not a secret
AWS_REGION = "AWS_REGION"
AWS_ENDPOINT_URL = "AWS_ENDPOINT_URL"
HTTP_AUTHORIZATION = "HTTP_AUTHORIZATION"

# The Secret keys a user may provide, in the order the Job lists them.
SOURCE_SECRET_KEYS: tuple[str, ...] = (
    AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY,
    AWS_SESSION_TOKEN,
    AWS_REGION,
    AWS_ENDPOINT_URL,
    HTTP_AUTHORIZATION,
)


def source_env_name(secret_key: str) -> str:
    """The env name the build Job gives a Secret key: `MODELOPS_SOURCE_<key>`."""
    if secret_key not in SOURCE_SECRET_KEYS:
        raise ValueError(f"{secret_key!r} is not a source credential key ({SOURCE_SECRET_KEYS})")
    return SOURCE_ENV_PREFIX + secret_key


# Secret key -> env name, for the operator's Job rendering.
SOURCE_CREDENTIAL_ENV: Mapping[str, str] = {key: source_env_name(key) for key in SOURCE_SECRET_KEYS}


def source_credentials(environ: Mapping[str, str]) -> dict[str, str]:
    """The allow-listed source credentials present in `environ`, by Secret key (empty values
    are absent: an optional `secretKeyRef` to a missing key yields no variable at all)."""
    return {
        key: environ[name]
        for key, name in SOURCE_CREDENTIAL_ENV.items()
        if environ.get(name, "").strip()
    }
