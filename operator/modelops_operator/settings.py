"""Operator settings from `MODELOPS_*` environment variables (the Helm chart sets them)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from modelops_contract import integrity


class Settings(BaseSettings):
    """Everything the operator is configured with; each field is one `MODELOPS_<NAME>` variable."""

    model_config = SettingsConfigDict(env_prefix="MODELOPS_", extra="ignore", frozen=True)

    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Namespaces to watch, comma-separated; empty watches the whole cluster.",
    )
    torchscript_namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Namespaces whose ModelDeployments may build TorchScript sources, "
        "comma-separated (`*`: every namespace). A TorchScript build runs the model's own code "
        "in the release namespace: refused elsewhere (format exported-program is not).",
    )
    store_pvc: str | None = Field(
        default="modelops-engines",
        description="PVC holding the engine store; mounted by build Jobs and Triton pods. "
        "Ignored when MODELOPS_STORE_URI is set (an s3 store takes precedence).",
    )
    store_mount_path: str = Field(
        default="/var/lib/modelops/engines",
        description="Where the store PVC is mounted (in the operator pod too, to check entries).",
    )
    store_uri: str | None = Field(
        default=None, description="s3:// prefix of the engine store instead of a PVC."
    )
    store_secret: str | None = Field(
        default=None, description="Secret with the s3 store's credentials (env keys)."
    )
    operator_namespace: str = Field(
        default="modelops-system",
        description="The operator's own namespace (the chart sets it from the pod): build Jobs "
        "run there, next to the store, the store key and the engine server.",
    )
    store_server: str = Field(
        default="http://modelops-store.modelops-system.svc:8080",
        description="Base URL of the engine server (`modelops-build serve-store`): Triton "
        "pods, validation and source Jobs reach the store only through it.",
    )
    store_key_secret: str = Field(
        default="modelops-store-key",
        description="Secret in the operator's namespace holding the store's MAC key (`mac`) "
        "and the transfer key (`transfer`); build Jobs' publishing step reads `mac` from it.",
    )
    store_mac_key: SecretStr | None = Field(
        default=None,
        description="The store's MAC key (from that Secret): entries whose engine.json does "
        "not carry its MAC are refused and rebuilt.",
    )
    transfer_key: SecretStr | None = Field(
        default=None,
        description="The transfer key (from that Secret): tokens for the engine server, and "
        "the receipts it gives for sources.",
    )
    stuck_seconds: float = Field(
        default=300.0,
        ge=30,
        description="How long a build or source pod may stay unschedulable, unable to pull its "
        "image or to start, before its build fails with that reason.",
    )
    build_ttl_seconds: int = Field(
        default=86400,
        ge=600,
        description="ttlSecondsAfterFinished of build Jobs (they live in the operator's "
        "namespace, where no ownerReference can collect them).",
    )
    triton_image: str = Field(
        default="nvcr.io/nvidia/tritonserver:26.10-py3", description="Triton server image."
    )
    builder_image: str = Field(
        default="ghcr.io/modelops/builder:0.1.0-ngc26.10",
        description="Engine builder image, built FROM the TensorRT image of Triton's NGC release.",
    )
    router_image: str = Field(
        default="docker.io/library/haproxy:2.8",
        description="HAProxy image of the traffic routers (the official image).",
    )
    agent_image: str = Field(
        default="ghcr.io/modelops/operator:0.1.0",
        description="Image of the router agent beside HAProxy (the operator's own image).",
    )
    routes_url: str | None = Field(
        default=None,
        description="Base URL the router agents long-poll for route tables, e.g. "
        "http://modelops-operator.modelops-system.svc:8080; unset: they read their ConfigMap.",
    )
    drain_seconds: int = Field(
        default=5,
        ge=0,
        le=300,
        description="preStop delay of Triton and router pods: the time the Service endpoints "
        "take to drop a terminating pod everywhere before it stops accepting connections.",
    )
    validation_deadline_seconds: int = Field(
        default=300, ge=30, le=3600, description="activeDeadlineSeconds of a validation Job."
    )
    tensorrt_version: str = Field(
        default="11.4.0.106",
        pattern=r"^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$",
        description="The full TensorRT version (tensorrt.__version__) of the Triton image: part "
        "of every TensorRT engine key, and the only version build Jobs may build with.",
    )
    onnx_serving_backend: Literal["onnxruntime", "python"] = Field(
        default="onnxruntime",
        description="Triton backend for ONNX Runtime engines: onnxruntime (NGC image) or python.",
    )
    build_backoff_limit: int = Field(default=1, ge=0, le=10, description="Build Job retries.")
    build_deadline_seconds: int = Field(
        default=3600, ge=60, description="activeDeadlineSeconds of a build Job."
    )
    build_max_concurrent: int = Field(
        default=8,
        ge=0,
        description="Build Jobs running at once in all (0: no cap); the others wait in a queue "
        "fair between namespaces.",
    )
    build_max_per_namespace: int = Field(
        default=2, ge=0, description="Build Jobs running at once for one namespace (0: no cap)."
    )
    triton_startup_seconds: int = Field(
        default=600, ge=30, description="How long a Triton pod may take to load its engine."
    )
    reconcile_interval_seconds: float = Field(
        default=300.0,
        gt=0,
        description="Safety-net reconcile of every ModelDeployment (+-20% jitter), read from the "
        "watch-fed caches: it writes only when something differs. Changes reconcile at once.",
    )
    leader_election: bool = Field(
        default=True,
        description="Reconcile only while holding the Lease (run several replicas for HA).",
    )
    lease_name: str = Field(default="modelops-operator", description="The leader Lease's name.")
    lease_namespace: str | None = Field(
        default=None,
        description="The leader Lease's namespace; unset: the operator pod's own namespace.",
    )
    lease_duration_seconds: float = Field(
        default=8.0, gt=0, description="How long a Lease not renewed holds before a takeover."
    )
    lease_renew_deadline_seconds: float = Field(
        default=5.0,
        gt=0,
        description="A leader that could not renew for this long stops writing (fencing).",
    )
    lease_retry_period_seconds: float = Field(
        default=2.0, gt=0, description="How often the leader renews and candidates look."
    )
    metrics_interval_seconds: float = Field(
        default=15.0, gt=0, description="How often serving pods are scraped for autoscaling."
    )
    metrics_stale_seconds: float = Field(
        default=60.0, gt=0, description="Metrics older than this never drive a scaling change."
    )
    prometheus_url: str | None = Field(
        default=None, description="Read Triton figures from Prometheus instead of the pods."
    )
    metrics_port: int = Field(
        default=8080, ge=1, le=65535, description="Port of the operator's /metrics and /healthz."
    )
    log_format: Literal["json", "plain"] = Field(default="json", description="Log line format.")
    default_triton_resources: dict[str, Any] = Field(
        default_factory=lambda: {
            "requests": {"cpu": "1", "memory": "2Gi"},
            "limits": {"memory": "8Gi"},
        },
        description="Resources of Triton containers when spec.serving.resources is absent.",
    )

    @field_validator("namespaces", "torchscript_namespaces", mode="before")
    @classmethod
    def _split_namespaces(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [ns.strip() for ns in value.split(",") if ns.strip()]
        return value

    @model_validator(mode="after")
    def _one_store(self) -> Settings:
        if self.store_uri and not self.store_uri.startswith("s3://"):
            raise ValueError("MODELOPS_STORE_URI must be an s3:// prefix")
        if not self.store_uri and not self.store_pvc:
            raise ValueError("set MODELOPS_STORE_PVC or MODELOPS_STORE_URI: the engine store")
        for name, value in (
            ("STORE_MAC_KEY", self.store_mac_key),
            ("TRANSFER_KEY", self.transfer_key),
        ):
            if value is not None:
                try:
                    integrity.key_bytes(value.get_secret_value())
                except integrity.IntegrityError as exc:
                    raise ValueError(f"MODELOPS_{name}: {exc}") from exc
        return self

    @property
    def uses_s3_store(self) -> bool:
        """True when the engine store is an s3:// prefix rather than a PVC."""
        return bool(self.store_uri)

    @property
    def mac_key(self) -> bytes | None:
        """The store's MAC key as bytes (None when unset: every entry is refused)."""
        return _key(self.store_mac_key)

    @property
    def transfer_key_bytes(self) -> bytes | None:
        """The transfer key as bytes (None when unset: tokens cannot be minted)."""
        return _key(self.transfer_key)

    @property
    def store_name(self) -> str:
        """How entries are named in status: the s3:// prefix, or pvc://CLAIM."""
        return self.store_uri or f"pvc://{self.store_pvc}"


def _key(value: SecretStr | None) -> bytes | None:
    return None if value is None else integrity.key_bytes(value.get_secret_value())
