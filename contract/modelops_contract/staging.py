"""The source step: a tenant's model, fetched in the tenant's namespace, handed to the build.

The build runs in the operator's namespace, next to the store; the tenant's credentials never
leave the tenant's namespace. So the operator runs `modelops-build stage` there (the "source
Job"): it fetches the source with the tenant's allow-listed credentials and streams it to the
engine server, which hashes the bytes as they arrive and answers with a *receipt* (integrity.py)
only when their sha256 is the one asked for. With `keep` the server stores the bytes under their
sha256 for the build Job to read; without it the bytes only prove that this ModelDeployment can
read the source (a store hit is used only after such a proof).
"""

from __future__ import annotations

from pydantic import Field

from .quantization import MAX_DATASET_BYTES
from .termination import parse_termination, termination_line
from .wire import WireModel

STAGE_COMMAND = "stage"
SOURCES_PATH = "/sources"
ENTRIES_PATH = "/entries"
OWNER_HEADER = "X-Modelops-Owner"


class StageDataSet(WireModel):
    """A build's data set the source Job sends beside the model (its credentials are the
    source Job's MODELOPS_DATA<index>_* variables, index = its place in the list)."""

    source_uri: str = Field(max_length=2048)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    token: str = Field(max_length=128, description="The source-put token of (sha256, owner).")
    max_download_bytes: int = Field(default=MAX_DATASET_BYTES, ge=1)


class StageRequest(WireModel):
    """What the source Job's `--request` argument carries."""

    source_uri: str = Field(max_length=2048)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    max_download_bytes: int = Field(default=20 * 1024**3, ge=1)
    server: str = Field(max_length=512, description="Base URL of the engine server.")
    owner: str = Field(max_length=128, description="The ModelDeployment's uid.")
    namespace: str = Field(
        default="default", max_length=63, description="The ModelDeployment's namespace (quota)."
    )
    expires: int = Field(default=0, ge=0, description="When the token expires (Unix seconds).")
    token: str = Field(
        max_length=128,
        description="The source-put token of (sha256, owner, namespace, keep, max bytes, expiry).",
    )
    keep: bool = Field(description="Store the bytes for a build (else: prove access only).")
    datasets: list[StageDataSet] = Field(
        default_factory=list,
        max_length=2,
        description="int8 builds: the calibration and labelled sets, kept for the build too.",
    )

    def put_query(self) -> str:
        """The PUT's query: every term of the token's scope the URL does not carry."""
        keep = "1" if self.keep else "0"
        return (
            f"keep={keep}&max={self.max_download_bytes}&ns={self.namespace}&expires={self.expires}"
        )


class StageSummary(WireModel):
    """The source Job's termination message."""

    ok: bool
    sha256: str | None = None
    bytes: int | None = Field(default=None, ge=0)
    kept: bool | None = None
    receipt: str | None = Field(default=None, max_length=128)
    dataset_receipts: dict[str, str] | None = Field(
        default=None, max_length=2, description="The data sets' receipts, by sha256."
    )
    reason: str | None = Field(default=None, max_length=128)
    message: str | None = Field(default=None, max_length=4096)

    def to_line(self) -> str:
        """The termination message: compact JSON that fits the kubelet's limit."""
        return termination_line(self)


def parse_stage_summary(text: str) -> StageSummary | None:
    """A source Job's summary, or None when the message is anything else."""
    return parse_termination(text, StageSummary)


def source_url(server: str, sha256: str) -> str:
    """Where the engine server keeps (and takes) the staged source `sha256`."""
    return f"{server.rstrip('/')}{SOURCES_PATH}/{sha256}"


def staged_source_url(server: str, sha256: str, owner: str) -> str:
    """The source `sha256` staged for ModelDeployment `owner` (its build Job reads, then drops
    it)."""
    return f"{source_url(server, sha256)}?owner={owner}"


def entry_url(server: str, digest: str, path: str) -> str:
    """Where the engine server serves one file of store entry `digest`."""
    return f"{server.rstrip('/')}{ENTRIES_PATH}/{digest}/{path}"
