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
"deepseek-operator.namespacedRules", the rules the operator needs on the namespaced resources it watches and
writes, shared by the ClusterRole (scope cluster) and by each Role (scope namespaced), is in _operator-rules.tpl,
generated from operator/deepseek_operator/k8s/kinds.py.
*/}}

{{/* Where the metric sources' credentials are mounted in the operator's pod. */}}
{{- define "deepseek-operator.credentialsDir" -}}
/etc/deepseek-operator/credentials
{{- end }}
