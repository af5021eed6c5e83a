{{/* Chart name. */}}
{{- define "modelops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: RELEASE-modelops, or RELEASE when it already contains the chart name. */}}
{{- define "modelops.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "modelops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "modelops.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "modelops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelops
{{- end }}

{{- define "modelops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modelops.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* An image reference from {repository, tag, digest}: REPOSITORY[:TAG][@DIGEST]; tag defaults to appVersion. */}}
{{- define "modelops.image" -}}
{{- $img := index . 0 }}
{{- $root := index . 1 }}
{{- $ref := $img.repository }}
{{- $tag := default $root.Chart.AppVersion $img.tag }}
{{- if $tag }}{{ $ref = printf "%s:%s" $ref $tag }}{{ end }}
{{- if $img.digest }}{{ $ref = printf "%s@%s" $ref $img.digest }}{{ end }}
{{- $ref }}
{{- end }}

{{/* Namespaces the operator watches; empty in clusterWide mode. */}}
{{- define "modelops.watchNamespaces" -}}
{{- if .Values.clusterWide }}
{{- list | toJson }}
{{- else if .Values.watchNamespaces }}
{{- .Values.watchNamespaces | toJson }}
{{- else }}
{{- list .Release.Namespace | toJson }}
{{- end }}
{{- end }}

{{/* True (non-empty) when the engine store is the PVC. */}}
{{- define "modelops.pvcStore" -}}
{{- if not .Values.store.s3.uri }}true{{ end }}
{{- end }}

{{/* The namespaced rules of the operator (a Role per namespace, or a ClusterRole). */}}
{{- define "modelops.namespacedRules" -}}
- apiGroups: [modelops.dev]
  resources: [modeldeployments]
  verbs: [get, list, watch, patch]
- apiGroups: [modelops.dev]
  resources: [modeldeployments/status]
  verbs: [get, patch]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [configmaps, services]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes, grpcroutes]
  verbs: [get, list, watch, create, patch, delete]
{{- end }}

{{/* Namespaces that get the namespaced Role: the watched ones and the release namespace, where
build Jobs run. */}}
{{- define "modelops.rbacNamespaces" -}}
{{- $all := include "modelops.watchNamespaces" . | fromJsonArray }}
{{- if not (has .Release.Namespace $all) }}{{ $all = append $all .Release.Namespace }}{{ end }}
{{- $all | toJson }}
{{- end }}

{{/* The Secret holding the store's keys `mac` and `transfer`. */}}
{{- define "modelops.storeKeySecret" -}}
{{- default (printf "%s-store-key" (include "modelops.fullname" .)) .Values.store.keySecret.name }}
{{- end }}

{{/* The engine server's Service name and in-cluster URL. */}}
{{- define "modelops.storeServerName" -}}
{{- printf "%s-store" (include "modelops.fullname" .) }}
{{- end }}

{{- define "modelops.storeServerUrl" -}}
{{- printf "http://%s.%s.svc:%v" (include "modelops.storeServerName" .) .Release.Namespace .Values.store.server.port }}
{{- end }}

{{/* The store location the engine server and build Jobs open: the s3 prefix or the mount path. */}}
{{- define "modelops.storeLocation" -}}
{{- if include "modelops.pvcStore" . }}{{ .Values.store.mountPath }}{{ else }}{{ .Values.store.s3.uri }}{{ end }}
{{- end }}

{{/* "true" when a monitoring object is wanted: (list VALUE ROOT); VALUE auto follows the
     cluster (prometheus-operator's monitoring.coreos.com/v1 served), true/false force it. */}}
{{- define "modelops.monitoringOn" -}}
{{- $value := index . 0 }}
{{- $root := index . 1 }}
{{- if eq (toString $value) "auto" }}
{{- if $root.Capabilities.APIVersions.Has "monitoring.coreos.com/v1" }}true{{ end }}
{{- else if eq (toString $value) "true" }}true
{{- end }}
{{- end }}

{{/* The namespaceSelector of monitors of what the operator runs in the watched namespaces. */}}
{{- define "modelops.watchedNamespaceSelector" -}}
{{- if .Values.clusterWide }}
any: true
{{- else }}
matchNames:
  {{- range include "modelops.watchNamespaces" . | fromJsonArray }}
  - {{ . }}
  {{- end }}
{{- end }}
{{- end }}

{{/* "true" when the NetworkPolicies are rendered: networkPolicy.enabled auto follows the
     cluster (networking.k8s.io/v1 NetworkPolicy served: every Kubernetes since 1.7, and what
     `helm template` assumes); whether the CNI enforces them is `modelops doctor`'s check. */}}
{{- define "modelops.networkPolicyOn" -}}
{{- $value := toString .Values.networkPolicy.enabled }}
{{- if eq $value "auto" }}
{{- if .Capabilities.APIVersions.Has "networking.k8s.io/v1" }}true{{ end }}
{{- else if eq $value "true" }}true
{{- end }}
{{- end }}

{{/* NetworkPolicy peers: the pods labelled (index . 1) in every watched namespace, each matched
     by kubernetes.io/metadata.name (set by the API server: a tenant cannot forge it). In
     clusterWide mode every namespace: tenants there can forge the pod labels (docs/security.md). */}}
{{- define "modelops.watchedPeers" -}}
{{- $root := index . 0 }}
{{- $pods := index . 1 }}
{{- if $root.Values.clusterWide }}
- namespaceSelector: {}
  podSelector:
    matchLabels:
      {{- toYaml $pods | nindent 6 }}
{{- else }}
{{- range $ns := include "modelops.watchNamespaces" $root | fromJsonArray }}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ $ns }}
  podSelector:
    matchLabels:
      {{- toYaml $pods | nindent 6 }}
{{- end }}
{{- end }}
{{- end }}

{{/* A NetworkPolicy peer: the pods labelled (index . 1) in the release namespace only. */}}
{{- define "modelops.releasePeer" -}}
{{- $root := index . 0 }}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ $root.Release.Namespace }}
  podSelector:
    matchLabels:
      {{- toYaml (index . 1) | nindent 6 }}
{{- end }}

{{/* The engine server's pod labels. */}}
{{- define "modelops.engineServerLabels" -}}
app.kubernetes.io/name: {{ include "modelops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: engine-server
{{- end }}

{{/* Egress to DNS (any resolver: cluster DNS runs where the cluster puts it). */}}
{{- define "modelops.dnsEgress" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end }}
