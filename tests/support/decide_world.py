"""A tiny in-memory cluster that applies Plans, shared by the decide tests (and checked here).

It does what the k8s layer and the controllers would: create-or-merge-patch on Apply, remove on
Delete, and, when a test says so, run Jobs to completion and make Deployments' pods ready.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from modelops_contract import integrity
from modelops_contract.key import key_digest
from modelops_contract.manifest import EngineManifest
from modelops_contract.request import BuildSummary
from modelops_contract.staging import StageSummary
from modelops_contract.validation import ValidationSummary
from modelops_operator.api import ModelDeployment, ModelDeploymentSpec
from modelops_operator.decide.analysis import Analysis, Verdict
from modelops_operator.decide.body import parse_body
from modelops_operator.decide.build import desired_key
from modelops_operator.decide.inputs import DecideContext, Observed
from modelops_operator.decide.plan import Apply, Delete, Plan
from modelops_operator.decide.reconcile import reconcile
from modelops_operator.decide.traffic import RouterReport
from modelops_operator.decide.writes import with_applied_hash
from modelops_operator.render.revision import render_deployment
from modelops_operator.settings import Settings

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
# The store's keys as the chart's Secret gives them (tests only).
MAC_KEY = "test-store-mac-key-0123456789abcdef0123"
TRANSFER_KEY = "test-transfer-key-0123456789abcdef01234"
SETTINGS = Settings(store_pvc="engines", store_mac_key=MAC_KEY, transfer_key=TRANSFER_KEY)
SHA = "ab" * 32
UID = "0f6c5a5e-1111-2222-3333-444455556666"
OPERATOR_NS = SETTINGS.operator_namespace


def spec(**overrides: Any) -> dict[str, Any]:
    """A valid spec (onnxruntime, 2 replicas, canary 50/100, 10 s interval) with overrides."""
    base: dict[str, Any] = {
        "model": {"source": {"uri": "https://models.example.com/m.onnx", "sha256": SHA}},
        "build": {"engine": "onnxruntime", "maxBatchSize": 8},
        "serving": {"replicas": 2},
        "rollout": {
            "strategy": "Canary",
            "canary": {"steps": [50, 100], "analysisIntervalSeconds": 10, "failureThreshold": 2},
            "progressDeadlineSeconds": 120,
        },
    }
    for path, value in overrides.items():
        node = base
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return base


def body(
    spec_: dict[str, Any] | None = None,
    *,
    name: str = "resnet",
    generation: int = 1,
    annotations: dict[str, str] | None = None,
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ModelDeployment API object."""
    return {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {
            "name": name,
            "namespace": "ml",
            "uid": UID,
            "generation": generation,
            "resourceVersion": "1",
            "annotations": annotations or {},
        },
        "spec": spec_ if spec_ is not None else spec(),
        "status": status or {},
    }


def key_of(body_: dict[str, Any]) -> str:
    """The engine key the operator wants for this body."""
    return desired_key(ModelDeploymentSpec.model_validate(body_["spec"]), SETTINGS)


def entry(key: str, *, signed: bool = True, created_at: str | None = None) -> dict[str, Any]:
    """engine.json of a store entry for `key`, sealed as the publishing step seals it (file
    digests, and the MAC with the test key unless `signed` is False)."""
    data = unsigned_entry(key)
    if created_at is not None:
        data["createdAt"] = created_at
    raw = integrity.signed_manifest_bytes(data, MAC_KEY.encode() if signed else None)
    return json.loads(raw)


def stored_bytes(data: dict[str, Any]) -> bytes:
    """engine.json's bytes as the publishing step writes them."""
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=True).encode() + b"\n"


def entry_digest(data: dict[str, Any]) -> str:
    """The sha256 of an entry's engine.json as published (what pods are pinned to)."""
    return integrity.sha256_hex(stored_bytes(data))


def verified(data: dict[str, Any] | None) -> tuple[dict[str, Any] | None, str | None, str | None]:
    """What the k8s layer passes on for a stored engine.json: (entry, digest, refusal)."""
    if data is None:
        return None, None, None
    raw = stored_bytes(data)
    try:
        integrity.verify_manifest(raw, MAC_KEY.encode())
    except integrity.IntegrityError as exc:
        return None, integrity.sha256_hex(raw), str(exc)
    return data, integrity.sha256_hex(raw), None


def receipt(sha: str = SHA, uid: str = UID, *, kept: bool = True) -> str:
    """The engine server's receipt for a source's bytes."""
    return integrity.token(TRANSFER_KEY.encode(), integrity.receipt_scope(sha, uid, kept=kept))


def unsigned_entry(key: str) -> dict[str, Any]:
    """The manifest fields of an entry for `key`, before sealing."""
    return {
        "key": key,
        "engine": "onnxruntime",
        "precision": "fp32",
        "servingBackend": "onnxruntime",
        "modelName": "model",
        "modelFile": "model.onnx",
        "inputs": [{"name": "input", "dataType": "FP32", "dims": [16]}],
        "outputs": [{"name": "logits", "dataType": "FP32", "dims": [4]}],
        "maxBatchSize": 8,
        "optBatchSize": 8,
        "sourceSha256": SHA,
        "format": "onnx",
        "profile": [{"batch": 8, "p50Ms": 1.0, "p99Ms": 2.0, "throughput": 4000.0}],
        "createdAt": "2025-01-01T00:00:00Z",
        "files": [
            {"path": "repository/model/1/model.onnx", "sha256": "cd" * 32, "size": 1024},
            {"path": "validation.npz", "sha256": "ef" * 32, "size": 512},
        ],
    }


def ready_pod(name: str, since: datetime, restarts: int = 0, waiting: str | None = None) -> dict:
    """A pod whose Ready condition flipped at `since`."""
    state = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
    return {
        "metadata": {"name": name},
        "status": {
            "podIP": f"10.0.{sum(map(ord, name)) % 250}.{len(name)}",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False" if waiting else "True",
                    "lastTransitionTime": since.strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            ],
            "containerStatuses": [{"name": "triton", "restartCount": restarts, "state": state}],
        },
    }


class World:
    """Children, the store and the clock of one ModelDeployment."""

    def __init__(self, body_: dict[str, Any], now: datetime = T0) -> None:
        self.body = body_
        self.now = now
        self.jobs: dict[str, dict[str, Any]] = {}
        # What each finished Job's pod left as its termination message, by Job name.
        self.messages: dict[str, str] = {}
        self.build_jobs: dict[str, dict[str, Any]] = {}
        self.deployments: dict[str, dict[str, Any]] = {}
        self.configmaps: dict[str, dict[str, Any]] = {}
        self.services: dict[str, dict[str, Any]] = {}
        self.routes: dict[str, dict[str, Any]] = {}
        self.store: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, list[dict[str, Any]]] = {}
        self.job_pods: dict[str, tuple[dict[str, Any], ...]] = {}
        self.plans: list[Plan] = []
        # A validation Job finishes as soon as it is created: "pass", "fail", or None (runs on).
        self.validation: str | None = "pass"
        # So does a source Job: "pass" (a receipt), "fail" (the source cannot be read), None.
        self.source: str | None = "pass"
        # The router pods run the table the previous reconcile published (one look behind).
        self.router_follows = True
        self.router_pods: list[dict[str, Any]] = []

    # --- observing and deciding ----------------------------------------------------------------
    def observed(self) -> Observed:
        """What the k8s layer would pass to reconcile (store entries verified as it does)."""
        try:
            wanted, digest, refusal = verified(self.store.get(key_of(self.body)))
        except ValueError:  # an invalid spec has no key
            wanted, digest, refusal = None, None, None
        status = self.body.get("status") or {}
        current = (status.get("revision") or {}).get("current")
        serving_key = next(
            (e["engineKey"] for e in status.get("history", []) if e["revision"] == current), None
        )
        router = next((d for d in self.deployments.values() if _app(d) == "modelops-router"), None)
        return Observed(
            jobs=copy.deepcopy({n: j for n, j in self.jobs.items() if _component(j) != "validate"}),
            validation_jobs=copy.deepcopy(
                {n: j for n, j in self.jobs.items() if _component(j) == "validate"}
            ),
            deployments=copy.deepcopy(
                {n: d for n, d in self.deployments.items() if _app(d) != "modelops-router"}
            ),
            pods=copy.deepcopy(self.pods),
            configmaps=frozenset(self.configmaps),
            services=copy.deepcopy(self.services),
            service=copy.deepcopy(self.services.get(self.body["metadata"]["name"])),
            router=copy.deepcopy(router),
            router_pods=tuple(copy.deepcopy(self.router_pods)),
            router_config=copy.deepcopy(
                self.configmaps.get(f"{self.body['metadata']['name']}-router")
            ),
            routes=copy.deepcopy(self.routes),
            store_entry=copy.deepcopy(wanted),
            serving_entry=verified(self.store.get(serving_key))[0] if serving_key else None,
            store_entry_digest=digest,
            store_refusal=refusal,
            build_jobs=copy.deepcopy(self.build_jobs),
            job_pods=copy.deepcopy(self.job_pods),
            messages=dict(self.messages),
        )

    def router_report(self) -> RouterReport | None:
        """What the router pods report: the table the last status published."""
        traffic = (self.body.get("status") or {}).get("traffic")
        if not self.router_follows or not traffic:
            return None
        return RouterReport(pods=2, ready_pods=2, applied_versions=(traffic["version"],) * 2)

    def decide(self, analyses: dict[int, Any] | None = None, enabled: bool = False) -> Plan:
        """One reconcile, without applying it."""
        ctx = DecideContext(
            self.now, SETTINGS, analyses or {}, enabled, router=self.router_report()
        )
        return reconcile(parse_body(copy.deepcopy(self.body)), self.observed(), ctx)

    def step(self, analyses: dict[int, Any] | None = None, enabled: bool = False) -> Plan:
        """One reconcile, applied to the world and to the status."""
        plan = self.decide(analyses, enabled)
        self.apply(plan)
        self.body["status"] = plan.status
        self.plans.append(plan)
        return plan

    def apply(self, plan: Plan, limit: int | None = None) -> None:
        """Run the plan's writes in order (only the first `limit` of them when given)."""
        for action in plan.changes[:limit]:
            if isinstance(action, Delete):
                store = {
                    "Job": self.build_jobs if action.namespace else self.jobs,
                    "Deployment": self.deployments,
                    "ConfigMap": self.configmaps,
                    "Service": self.services,
                }
                if action.kind in ("HTTPRoute", "GRPCRoute"):
                    self.routes.pop(f"{action.kind}/{action.name}", None)
                else:
                    store[action.kind].pop(action.name, None)
                if action.kind == "Deployment":
                    self.pods.pop(action.name, None)
                if action.kind == "Job":
                    self.messages.pop(action.name, None)
                continue
            assert isinstance(action, Apply)
            # What the k8s layer writes: the manifest with the hash of its owned fields.
            manifest, _ = with_applied_hash(copy.deepcopy(action.manifest))
            kind, name = manifest["kind"], manifest["metadata"]["name"]
            if kind == "Service":
                self.services[name] = manifest
            elif kind == "ConfigMap":
                self.configmaps[name] = manifest
            elif kind in ("HTTPRoute", "GRPCRoute"):
                self.routes[f"{kind}/{name}"] = manifest
            else:
                objects = self.jobs if kind == "Job" else self.deployments
                if kind == "Job" and manifest["metadata"].get("namespace") == OPERATOR_NS:
                    objects = self.build_jobs
                if name in objects:
                    old_spec = copy.deepcopy(objects[name]["spec"])
                    objects[name]["spec"].update(manifest["spec"])
                    if objects[name]["spec"] != old_spec:  # the API server counts spec changes
                        meta = objects[name]["metadata"]
                        meta["generation"] = int(meta.get("generation") or 1) + 1
                    objects[name]["metadata"]["labels"] = manifest["metadata"]["labels"]
                    objects[name]["metadata"]["annotations"] = manifest["metadata"]["annotations"]
                else:
                    manifest["status"] = {}
                    manifest["metadata"]["generation"] = 1
                    objects[name] = manifest
                    if _component(manifest) == "validate" and self.validation is not None:
                        self.finish_validation(name, self.validation == "pass")
                    if _component(manifest) == "source" and self.source is not None:
                        self.finish_source(name, self.source == "pass")

    @property
    def service(self) -> dict[str, Any] | None:
        """The ModelDeployment's own Service."""
        return self.services.get(self.body["metadata"]["name"])

    def finish_validation(self, name: str, ok: bool) -> None:
        """A validation Job completes with a passing or failing summary."""
        summary = ValidationSummary(
            ok=ok,
            samples=8,
            pods=2,
            max_abs_error=1e-7 if ok else 0.5,
            reason=None if ok else "ValidationFailed",
            message=None if ok else "pod 10.0.0.1:8001 serves wrong answers: output 'logits'",
        )
        condition = "Complete" if ok else "Failed"
        self.jobs[name]["status"] = {
            "conditions": [{"type": condition, "status": "True"}],
            "succeeded" if ok else "failed": 1,
        }
        self.messages[name] = summary.to_line()

    def finish_source(self, name: str, ok: bool) -> None:
        """A source Job ends: the engine server's receipt, or the fetch's failure."""
        job = self.jobs[name]
        kept = job["metadata"]["annotations"]["modelops.dev/keep"] == "true"
        sha = self.body["spec"]["model"]["source"]["sha256"]
        if ok:
            summary = StageSummary(
                ok=True, sha256=sha, bytes=1024, kept=kept, receipt=receipt(sha, kept=kept)
            )
        else:
            summary = StageSummary(
                ok=False, reason="FetchFailed", message="HTTP 403 Forbidden from the source"
            )
        job["status"] = {
            "conditions": [{"type": "Complete" if ok else "Failed", "status": "True"}],
            "succeeded" if ok else "failed": 1,
        }
        self.messages[name] = summary.to_line()

    # --- what the cluster does -----------------------------------------------------------------
    def tick(self, seconds: float) -> None:
        """Move the clock."""
        self.now += timedelta(seconds=seconds)

    def start_build(self) -> Plan:
        """Two looks: the source Job (it finishes at once), then the build Job's creation."""
        self.step()
        return self.step()

    def finish_build(self, ok: bool = True, reason: str = "AccuracyGateFailed") -> None:
        """Every build Job completes; a successful one publishes its entry."""
        for name, job in self.build_jobs.items():
            key = job["metadata"]["annotations"]["modelops.dev/engine-key"]
            if ok:
                summary = BuildSummary(
                    ok=True,
                    key=key,
                    uri=f"pvc://engines/{key_digest(key)}",
                    engine="onnxruntime",
                    precision="fp32",
                    throughput=4000.0,
                )
                job["status"] = {
                    "conditions": [{"type": "Complete", "status": "True"}],
                    "succeeded": 1,
                }
                self.store[key] = entry(key)
            else:
                summary = BuildSummary(
                    ok=False, key=key, reason=reason, message="max abs 0.3 > 0.01"
                )
                job["status"] = {
                    "conditions": [
                        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}
                    ],
                    "failed": 2,
                }
            self.messages[name] = summary.to_line()

    def settle(self, since: datetime | None = None) -> None:
        """Every Deployment's pods become ready (at `since`, default now)."""
        for name, dep in self.deployments.items():
            replicas = dep["spec"]["replicas"]
            if _app(dep) == "modelops-router":
                dep["status"] = {"replicas": replicas, "readyReplicas": replicas}
                # Ready long enough for every node to route to them (drainSeconds and more).
                settled = (since or self.now) - timedelta(minutes=1)
                kept_router = self.router_pods[:replicas]
                self.router_pods = kept_router + [
                    ready_pod(f"{name}-{i}", settled) for i in range(len(kept_router), replicas)
                ]
                continue
            # The Deployment controller has seen the newest spec (its observedGeneration).
            dep["status"] = {
                "replicas": replicas,
                "readyReplicas": replicas,
                "observedGeneration": dep["metadata"].get("generation", 1),
            }
            # Pods that were already ready keep their transition time, as the kubelet does.
            kept = [
                p
                for p in self.pods.get(name, [])
                if not p["status"]["containerStatuses"][0]["restartCount"]
            ]
            fresh = [
                ready_pod(f"{name}-{i}", since or self.now) for i in range(len(kept), replicas)
            ]
            self.pods[name] = (kept + fresh)[:replicas]

    def crash(self, name: str) -> None:
        """The Deployment's pods crash-loop."""
        dep = self.deployments[name]
        dep["status"] = {
            "replicas": dep["spec"]["replicas"],
            "readyReplicas": 0,
            "observedGeneration": dep["metadata"].get("generation", 1),
        }
        self.pods[name] = [ready_pod(f"{name}-0", self.now, restarts=4, waiting="CrashLoopBackOff")]

    def replicas(self) -> dict[str, int]:
        """spec.replicas of every Deployment."""
        return {
            n: d["spec"]["replicas"]
            for n, d in sorted(self.deployments.items())
            if _app(d) != "modelops-router"
        }

    def status(self) -> dict[str, Any]:
        """The current status."""
        return self.body["status"]

    def condition(self, ctype: str) -> dict[str, Any]:
        """One condition of the status."""
        return next(c for c in self.status()["conditions"] if c["type"] == ctype)

    def serve(self) -> Plan:
        """Fetch, build, publish and roll out the first revision until it is Ready."""
        self.start_build()
        self.finish_build()
        self.step()
        return self.roll_on()

    def roll_on(self, looks: int = 6) -> Plan:
        """Settle and look again until the rollout is done (validation, router, promotion)."""
        plan = self.plans[-1]
        for _ in range(looks):
            self.settle()
            plan = self.step()
            if self.status()["phase"] != "RollingOut" and not plan.changes:
                break
        return plan


def _component(obj: dict[str, Any]) -> str:
    return str(obj["metadata"].get("labels", {}).get("app.kubernetes.io/component", ""))


def _app(obj: dict[str, Any]) -> str:
    return str(obj["metadata"].get("labels", {}).get("app.kubernetes.io/name", ""))


def reasons(plan: Plan) -> list[str]:
    """The Event reasons of a plan, in order."""
    return [e.reason for e in plan.events]


STEPS = [[100], [50, 100], [10, 50, 100], [25, 50, 75, 100]]
STATES = ["RollingOut", "Serving", "Superseded", "RolledBack", "Failed"]


@st.composite
def worlds(draw: st.DrawFn) -> tuple[dict[str, Any], Observed, DecideContext]:
    replicas = draw(st.integers(1, 6))
    overrides: dict[str, Any] = {
        "serving.replicas": replicas,
        "rollout.strategy": draw(st.sampled_from(["Canary", "Recreate"])),
        "rollout.canary.steps": draw(st.sampled_from(STEPS)),
    }
    if draw(st.booleans()):
        overrides["scaling"] = {"minReplicas": 1, "maxReplicas": 6, "target": 100}
    generation = draw(st.integers(1, 4))
    annotations = {}
    if draw(st.booleans()):
        annotations["modelops.dev/rollback-to"] = str(draw(st.integers(1, 5)))
    if draw(st.booleans()):
        annotations["modelops.dev/retry"] = draw(st.sampled_from(["a", "b"]))
    md_body = body(spec(**overrides), generation=generation, annotations=annotations)
    key = key_of(md_body)
    md = ModelDeployment.from_body(md_body)
    stored = entry(key)
    manifest = EngineManifest.model_validate(stored)
    digest = entry_digest(stored)
    numbers = draw(st.sets(st.integers(1, 5), max_size=3))
    deployments: dict[str, dict[str, Any]] = {}
    pods: dict[str, list[dict[str, Any]]] = {}
    for n in sorted(numbers):
        dep = render_deployment(
            md, n, manifest, SETTINGS, draw(st.integers(0, 6)), manifest_sha256=digest
        )
        if draw(st.booleans()):  # another spec's revision
            dep["metadata"]["annotations"]["modelops.dev/serving-hash"] = "0" * 16
        have = draw(st.integers(0, dep["spec"]["replicas"]))
        dep["status"] = {"replicas": dep["spec"]["replicas"], "readyReplicas": have}
        name = dep["metadata"]["name"]
        deployments[name] = dep
        since = T0 - timedelta(seconds=draw(st.integers(0, 300)))
        crash = draw(st.booleans()) and draw(st.booleans())
        pods[name] = [ready_pod(f"{name}-{i}", since) for i in range(have)]
        if crash:
            pods[name].append(ready_pod(f"{name}-x", since, restarts=5, waiting="CrashLoopBackOff"))
    pointers = st.one_of(st.none(), st.sampled_from(sorted(numbers))) if numbers else st.none()
    started = (T0 - timedelta(seconds=draw(st.integers(0, 900)))).strftime("%Y-%m-%dT%H:%M:%SZ")
    history = [
        {
            "revision": n,
            "engineKey": key,
            "generation": draw(st.integers(1, 4)),
            "state": draw(st.sampled_from(STATES)),
            "time": started,
        }
        for n in sorted(numbers)
    ]
    status = {
        "revision": {
            k: v
            for k, v in (
                ("current", draw(pointers)),
                ("candidate", draw(pointers)),
                ("previous", draw(pointers)),
            )
            if v is not None
        },
        "history": history,
        "replicas": replicas,
        "rollout": {
            "step": draw(st.integers(0, 3)),
            "startedAt": started,
            "stepStartedAt": started,
            "passes": draw(st.integers(0, 2)),
            "failures": draw(st.integers(0, 1)),
        },
    }
    md_body["status"] = status
    observed = Observed(
        deployments=deployments,
        pods=pods,
        configmaps=frozenset(deployments),
        **({"store_entry": stored, "store_entry_digest": digest} if draw(st.booleans()) else {}),
    )
    now = T0 + timedelta(seconds=draw(st.integers(0, 400)))
    return md_body, observed, DecideContext(now, SETTINGS, {}, draw(st.booleans()))


def replicas_after(observed: Observed, plan: Any) -> dict[str, int]:
    """spec.replicas of each observed revision once the plan ran (deleted ones drop out)."""
    replicas = {n: d["spec"]["replicas"] for n, d in observed.deployments.items()}
    for action in plan.changes:
        if isinstance(action, Delete) and action.kind == "Deployment":
            replicas.pop(action.name, None)
        elif isinstance(action, Apply) and action.manifest["kind"] == "Deployment":
            name = action.manifest["metadata"]["name"]
            if name in replicas:
                replicas[name] = action.manifest["spec"]["replicas"]
    return replicas


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def analysis(verdict: str, message: str = "errorRate 0 over 100 requests") -> Analysis:
    """One canary analysis as the metrics daemon hands it to reconcile."""
    if verdict == Verdict.FAIL:
        return Analysis(Verdict.FAIL, (message,))
    return Analysis(Verdict(verdict), note=message)


def applied(plan: Any) -> list[tuple[str, str, int | None]]:
    """(kind, name, replicas) of every Apply, in order."""
    return [
        (
            a.manifest["kind"],
            a.manifest["metadata"]["name"],
            a.manifest.get("spec", {}).get("replicas"),
        )
        for a in plan.actions
        if isinstance(a, Apply)
    ]


def conds(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """type -> (status, reason)."""
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def change(world: World, **overrides: Any) -> None:
    """Edit the spec as a user would: a new generation."""
    for path, value in overrides.items():
        node = world.body["spec"]
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    world.body["metadata"]["generation"] += 1
