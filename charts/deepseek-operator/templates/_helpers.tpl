{{/*
Chart name, truncated to 63 characters (the DNS label limit of Kubernetes names).
*/}}
{{- define "deepseek-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: release name + chart name, unless the release name already contains the chart name.
*/}}
{{- define "deepseek-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "deepseek-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Standard labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/).
*/}}
{{- define "deepseek-operator.labels" -}}
helm.sh/chart: {{ include "deepseek-operator.chart" . }}
{{ include "deepseek-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: deepseek-operator
{{- end }}

{{/*
Selector labels: never change for the life of a release (Deployment selectors are immutable).
*/}}
{{- define "deepseek-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "deepseek-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "deepseek-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "deepseek-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "deepseek-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
HA: more than one replica turns on kopf peering ("true" or "").
*/}}
{{- define "deepseek-operator.ha" -}}
{{- if gt (int .Values.replicas) 1 }}true{{- end }}
{{- end }}

{{- define "deepseek-operator.peeringName" -}}
{{- default (include "deepseek-operator.fullname" .) .Values.peering.name }}
{{- end }}

{{/*
Namespaces the operator watches: none (= the whole cluster) in cluster scope.
The schema requires at least one in namespaced scope; `fail` repeats it for --skip-schema-validation.
*/}}
{{- define "deepseek-operator.watchNamespaces" -}}
{{- if eq .Values.rbac.scope "namespaced" }}
{{- if not .Values.rbac.namespaces }}
{{- fail "rbac.scope=namespaced needs rbac.namespaces: the namespaces to watch (at least one)" }}
{{- end }}
{{- toJson .Values.rbac.namespaces }}
{{- else }}
{{- toJson list }}
{{- end }}
{{- end }}

{{/*
The rules the operator needs on the namespaced resources it watches and writes. Shared by the ClusterRole
(scope cluster) and by each Role (scope namespaced). Verbs: SSA creates and updates children through PATCH,
and the API server also checks `create` when an apply creates the object; `update` is never used.
*/}}
{{- define "deepseek-operator.namespacedRules" -}}
# The custom resource: read and watch it; write only its status subresource. The operator never writes
# spec, metadata or finalizers (its kopf handlers are event/index handlers, which keep no state on objects).
- apiGroups: [serving.deepseek.ai]
  resources: [deepseekdeployments]
  verbs: [get, list, watch]
- apiGroups: [serving.deepseek.ai]
  resources: [deepseekdeployments/status]
  verbs: [patch]
# Children, applied server-side with one field manager, watched through kopf indexes, deleted when stale.
- apiGroups: [""]
  resources: [configmaps, services, persistentvolumeclaims]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [apps]
  resources: [deployments, statefulsets]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [leaderworkerset.x-k8s.io]
  resources: [leaderworkersets]
  verbs: [get, list, watch, create, patch, delete]
# IMEX channels of replicas across GB200 trays (NVIDIA's DRA driver for GPUs).
- apiGroups: [resource.nvidia.com]
  resources: [computedomains]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [monitoring.coreos.com]
  resources: [podmonitors]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch, create, patch, delete]
# The scaler of spec.serving.autoscaling: a KEDA ScaledObject, or a plain HPA without KEDA.
- apiGroups: [keda.sh]
  resources: [scaledobjects]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, patch, delete]
# SSH keys of multi-node (MPI) replicas: created (AlreadyExists means there) and deleted with their revision.
# No get/list/watch: the operator reads no Secret (metric credentials are files mounted into its pod).
- apiGroups: [""]
  resources: [secrets]
  verbs: [create, delete]
# Pods (serving, preflight, download, quantize): readiness and scheduling failures for the status. Read-only.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
# The namespace itself, read for its Pod Security label (a layout its level refuses is reported, not applied).
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get]
# Events: one per decision, posted on the DeepSeekDeployment (core v1 Events API); and the kubelet's Warning
# events about the resource's pods (a Secret or ConfigMap they mount that is missing), read for the status.
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch, list, watch]
{{- end }}

{{/* Where the metric sources' credentials are mounted in the operator's pod. */}}
{{- define "deepseek-operator.credentialsDir" -}}
/etc/deepseek-operator/credentials
{{- end }}
