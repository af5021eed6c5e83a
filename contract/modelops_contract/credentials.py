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


# A build's data sets (spec.build.calibration.source, spec.validation.source) may have their own
# Secrets: the source Job gets them under MODELOPS_DATA<n>_<key>, and its fetch of set n reads
# them as the MODELOPS_SOURCE_ names (dataset_environ), never mixed with the model's.
DATASET_ENV_PREFIX = "MODELOPS_DATA"


def dataset_credential_env(index: int) -> dict[str, str]:
    """Secret key -> env name of data set `index` in the source Job."""
    return {key: f"{DATASET_ENV_PREFIX}{index}_{key}" for key in SOURCE_SECRET_KEYS}


def dataset_environ(environ: Mapping[str, str], index: int) -> dict[str, str]:
    """The environment data set `index` is fetched with: its own credentials under the
    MODELOPS_SOURCE_ names, and none of the model's."""
    own = {
        SOURCE_CREDENTIAL_ENV[key]: environ[name]
        for key, name in dataset_credential_env(index).items()
        if name in environ
    }
    others = {
        name: value
        for name, value in environ.items()
        if not name.startswith((SOURCE_ENV_PREFIX, DATASET_ENV_PREFIX))
    }
    return others | own
