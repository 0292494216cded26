{{/* Names and labels shared by every template of the chart. */}}

{{- define "kubeformer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's operator: "<release>" when it already names the chart, else "<release>-kubeformer". */}}
{{- define "kubeformer.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "kubeformer.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "kubeformer.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "kubeformer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubeformer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "kubeformer.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "kubeformer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: kubeformer
{{- end }}

{{- define "kubeformer.serviceAccountName" -}}
{{- include "kubeformer.fullname" . }}
{{- end }}

{{/* The kopf peering name: set only with more than one replica (one acts, the others stand by). */}}
{{- define "kubeformer.peeringName" -}}
{{- if gt (int .Values.operator.replicas) 1 }}
{{- default (include "kubeformer.fullname" .) .Values.operator.peeringName }}
{{- end }}
{{- end }}

{{- define "kubeformer.image" -}}
{{- printf "%s:%s" .repository .tag }}
{{- end }}

{{/* The restricted Pod Security profile, for the operator and the helm test pod alike. */}}
{{- define "kubeformer.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "kubeformer.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}
