"""Pod Security Standards, "restricted" profile (which includes "baseline"), as a pure checker.

Follows https://kubernetes.io/docs/concepts/security/pod-security-standards/ (policy version
v1.32): `restricted_violations(pod_spec)` returns one readable line per violation, empty when the
pod would be admitted by a namespace labelled `pod-security.kubernetes.io/enforce: restricted`.
`pod_specs(manifest)` finds the pod template of any workload kind.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Json = dict[str, Any]

# restricted: only these volume types.
ALLOWED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
VOLUME_NON_SOURCE_KEYS = frozenset({"name"})
# restricted: capabilities.add may hold only this one.
ALLOWED_ADDED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
# baseline: SELinux types a pod may ask for.
ALLOWED_SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
# baseline: the "safe" sysctls.
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
ALLOWED_SECCOMP = frozenset({"RuntimeDefault", "Localhost"})
ALLOWED_APPARMOR = frozenset({"RuntimeDefault", "Localhost"})

WORKLOAD_KINDS = frozenset(
    {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}
)


def pod_specs(manifest: Json) -> Iterator[tuple[Json, Json]]:
    """(pod metadata, pod spec) of a workload manifest; nothing for other kinds."""
    kind = manifest.get("kind")
    if kind not in WORKLOAD_KINDS:
        return
    if kind == "Pod":
        yield manifest.get("metadata") or {}, manifest["spec"]
        return
    spec = manifest["spec"]
    if kind == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    template = spec["template"]
    yield template.get("metadata") or {}, template["spec"]


def _containers(pod: Json) -> Iterator[tuple[str, Json]]:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for container in pod.get(field) or []:
            yield f"{field}[{container.get('name', '?')}]", container


def restricted_violations(pod: Json, metadata: Json | None = None) -> list[str]:
    """Every way `pod` (a PodSpec) breaks the restricted profile; [] when it complies."""
    out: list[str] = []
    psc: Json = pod.get("securityContext") or {}
    annotations: dict[str, str] = (metadata or {}).get("annotations") or {}

    # --- baseline ---------------------------------------------------------------------------
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            out.append(f"spec.{field} must be unset or false")
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        out.append("spec.securityContext.windowsOptions.hostProcess must not be true")
    _check_selinux(psc.get("seLinuxOptions"), "spec.securityContext", out)
    _check_apparmor(psc.get("appArmorProfile"), "spec.securityContext", out)
    for key, value in annotations.items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
            value == "runtime/default" or value.startswith("localhost/")
        ):
            out.append(f"annotation {key}={value}: AppArmor must be runtime/default or localhost/*")
    for sysctl in psc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            out.append(f"spec.securityContext.sysctls: {sysctl.get('name')} is not a safe sysctl")

    # --- restricted: volumes -----------------------------------------------------------------
    for volume in pod.get("volumes") or []:
        sources = set(volume) - VOLUME_NON_SOURCE_KEYS
        for source in sorted(sources - ALLOWED_VOLUME_TYPES):
            out.append(f"volume {volume.get('name')}: type {source} is not allowed")

    # --- restricted: pod-level identity and seccomp -------------------------------------------
    pod_non_root = psc.get("runAsNonRoot") is True
    if psc.get("runAsNonRoot") is False:
        out.append("spec.securityContext.runAsNonRoot must not be false")
    if psc.get("runAsUser") == 0:
        out.append("spec.securityContext.runAsUser must not be 0")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in ALLOWED_SECCOMP:
        out.append(f"spec.securityContext.seccompProfile.type {pod_seccomp} is not allowed")

    containers = list(_containers(pod))
    if not containers:
        out.append("pod has no containers")
    for where, container in containers:
        csc: Json = container.get("securityContext") or {}
        # baseline
        if csc.get("privileged"):
            out.append(f"{where}: privileged must be unset or false")
        if (csc.get("windowsOptions") or {}).get("hostProcess"):
            out.append(f"{where}: windowsOptions.hostProcess must not be true")
        if csc.get("procMount") not in (None, "Default"):
            out.append(f"{where}: procMount must be Default")
        _check_selinux(csc.get("seLinuxOptions"), where, out)
        _check_apparmor(csc.get("appArmorProfile"), where, out)
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                out.append(f"{where}: hostPort {port['hostPort']} is not allowed")
        # restricted
        if csc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{where}: allowPrivilegeEscalation must be false")
        if csc.get("runAsNonRoot") is False:
            out.append(f"{where}: runAsNonRoot must not be false")
        elif not pod_non_root and csc.get("runAsNonRoot") is not True:
            out.append(f"{where}: runAsNonRoot must be true (in the pod or the container)")
        if csc.get("runAsUser") == 0:
            out.append(f"{where}: runAsUser must not be 0")
        seccomp = (csc.get("seccompProfile") or {}).get("type")
        if seccomp is not None and seccomp not in ALLOWED_SECCOMP:
            out.append(f"{where}: seccompProfile.type {seccomp} is not allowed")
        if seccomp is None and pod_seccomp is None:
            out.append(f"{where}: seccompProfile must be RuntimeDefault or Localhost")
        caps: Json = csc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{where}: capabilities.drop must contain ALL")
        for cap in caps.get("add") or []:
            if cap not in ALLOWED_ADDED_CAPABILITIES:
                out.append(f"{where}: capability {cap} may not be added")
    return out


def _check_selinux(options: Json | None, where: str, out: list[str]) -> None:
    if not options:
        return
    if options.get("type", "") not in ALLOWED_SELINUX_TYPES:
        out.append(f"{where}: seLinuxOptions.type {options['type']} is not allowed")
    for field in ("user", "role"):
        if options.get(field):
            out.append(f"{where}: seLinuxOptions.{field} must be unset")


def _check_apparmor(profile: Json | None, where: str, out: list[str]) -> None:
    if profile and profile.get("type") not in ALLOWED_APPARMOR:
        out.append(f"{where}: appArmorProfile.type {profile.get('type')} is not allowed")
