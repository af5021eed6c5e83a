"""What one reconcile knows before it decides anything, and the revisions status tracks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..api import (
    HistoryEntry,
    ModelDeployment,
    ModelDeploymentStatus,
    RolloutProgress,
    TrafficMode,
)
from ..render.common import ANNOTATION_RETRY, ANNOTATION_ROLLBACK_TO
from ..render.revision import serving_hash
from ..settings import Settings
from .build import desired_key
from .history import SERVED_STATES
from .inputs import DecideContext, Observed, ObserveKeys
from .plan import Emit, EventReason
from .revisions import RevisionView, revision_views
from .steering import Steering, read_steering


@dataclass(frozen=True)
class Facts:
    """The spec's wants and the observed revisions: the same for every step of one reconcile."""

    md: ModelDeployment
    observed: Observed
    context: DecideContext
    now: str
    key: str
    serving_hash: str
    retry_token: str
    revisions: Mapping[int, RevisionView]
    pinned: int | None
    entry_digest: str | None = None  # sha256 of the desired key's verified engine.json
    entry_refused: bool = False  # the store holds an entry at the desired key, refused
    steering: Steering = field(default_factory=Steering)  # promote, abort, pause, weight

    @property
    def name(self) -> str:
        """The ModelDeployment's name."""
        return self.md.metadata.name

    @property
    def generation(self) -> int:
        """metadata.generation: the spec this reconcile works for."""
        return self.md.metadata.generation

    @property
    def settings(self) -> Settings:
        """The operator's settings."""
        return self.context.settings

    def wanted(self, revision: RevisionView | None) -> bool:
        """True when a revision is what should serve: the pinned one, or the spec's own."""
        if revision is None:
            return False
        if self.pinned is not None:
            return revision.number == self.pinned
        if (revision.key, revision.serving_hash) != (self.key, self.serving_hash):
            return False
        # Pods pinned to an engine.json the store no longer vouches for (refused, or rebuilt
        # since) could not start again: a new revision of the store's entry replaces them.
        pinned = revision.manifest_sha256
        if not pinned or (self.entry_digest is None and not self.entry_refused):
            return True
        return pinned == self.entry_digest

    def current_view(self, lineage: Lineage) -> RevisionView | None:
        """The observed Deployment of the current revision, if any."""
        return None if lineage.current is None else self.revisions.get(lineage.current)


@dataclass(frozen=True)
class Lineage:
    """The revisions status tracks: current, candidate, previous, the history and the progress."""

    current: int | None
    candidate: int | None
    previous: int | None
    history: tuple[HistoryEntry, ...]
    progress: RolloutProgress | None

    @classmethod
    def of(cls, status: ModelDeploymentStatus) -> Lineage:
        """The lineage as the last status recorded it."""
        revision = status.revision
        return cls(
            current=revision.current,
            candidate=revision.candidate,
            previous=revision.previous,
            history=tuple(status.history),
            progress=status.rollout,
        )


def serving_key(md: ModelDeployment) -> str | None:
    """The engine key of the revision serving now, from the history."""
    current = md.status.revision.current
    return next((e.engine_key for e in md.status.history if e.revision == current), None) or None


def observe_keys(md: ModelDeployment, settings: Settings) -> ObserveKeys:
    """What the k8s layer reads besides the children: the wanted engine's entry, the serving
    revision's entry (to compare signatures), and the routes in GatewayAPI mode."""
    return ObserveKeys(
        desired=desired_key(md.spec, settings),
        serving=serving_key(md),
        # Also after leaving GatewayAPI mode: the routes left behind must be seen to be deleted.
        gateway=TrafficMode.GATEWAY_API
        in {md.spec.rollout.traffic.mode, md.status.traffic.mode if md.status.traffic else None},
    )


def pin_target(
    md: ModelDeployment, revisions: Mapping[int, RevisionView]
) -> tuple[int | None, tuple[Emit, ...]]:
    """The revision named by `modelops.dev/rollback-to` when it can serve again, else a warning."""
    raw = md.metadata.annotations.get(ANNOTATION_ROLLBACK_TO, "").strip()
    if not raw:
        return None, ()
    history = md.status.history
    entry = next((e for e in history if raw.isdigit() and e.revision == int(raw)), None)
    # A revision that served once, or the one this annotation is already switching to.
    switching = entry is not None and entry.revision == md.status.revision.candidate
    usable = entry is not None and (entry.state in SERVED_STATES or switching)
    if entry is None or entry.revision not in revisions or not usable:
        warning = Emit(
            EventReason.ROLLBACK_TARGET_INVALID,
            f"{ANNOTATION_ROLLBACK_TO}={raw!r} ignored: no revision in status.history that "
            "served and still has its Deployment",
        )
        return None, (warning,)
    return entry.revision, ()


def read_facts(
    md: ModelDeployment, observed: Observed, context: DecideContext, now: str
) -> tuple[Facts, tuple[Emit, ...]]:
    """The facts of this reconcile, and the warning of an unusable rollback-to annotation."""
    revisions = revision_views(observed)
    pinned, warnings = pin_target(md, revisions)
    facts = Facts(
        md=md,
        observed=observed,
        context=context,
        now=now,
        key=desired_key(md.spec, context.settings),
        serving_hash=serving_hash(md.spec, context.settings),
        retry_token=md.metadata.annotations.get(ANNOTATION_RETRY, ""),
        revisions=revisions,
        pinned=pinned,
        entry_digest=observed.store_entry_digest if observed.store_entry is not None else None,
        entry_refused=observed.store_refusal is not None,
        steering=read_steering(md.metadata.annotations),
    )
    return facts, warnings
