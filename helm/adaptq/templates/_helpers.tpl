{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "adaptq.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name; role objects append "-<role>", so keep it ≤ 50. */}}
{{- define "adaptq.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "adaptq.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "adaptq.labels" -}}
helm.sh/chart: {{ include "adaptq.chart" . }}
{{ include "adaptq.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: adaptq
{{- end }}

{{- define "adaptq.selectorLabels" -}}
app.kubernetes.io/name: {{ include "adaptq.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one role; call with (dict "root" $ "role" "quantize"). */}}
{{- define "adaptq.roleLabels" -}}
{{ include "adaptq.labels" .root }}
app.kubernetes.io/component: {{ .role }}
{{- end }}

{{- define "adaptq.roleSelectorLabels" -}}
{{ include "adaptq.selectorLabels" .root }}
app.kubernetes.io/component: {{ .role }}
{{- end }}

{{- define "adaptq.roleName" -}}
{{- printf "%s-%s" (include "adaptq.fullname" .root) .role | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "adaptq.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "adaptq.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "adaptq.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The one value both the worker's --stop-timeout and the pod's grace
period derive from: grace = stop timeout + margin, always larger. */}}
{{- define "adaptq.stopTimeout" -}}
{{- if lt (int .Values.stopTimeoutSeconds) 1 }}
{{- fail "stopTimeoutSeconds must be at least 1" }}
{{- end }}
{{- printf "%ds" (int .Values.stopTimeoutSeconds) }}
{{- end }}

{{- define "adaptq.terminationGracePeriodSeconds" -}}
{{- if lt (int .Values.terminationGraceMarginSeconds) 5 }}
{{- fail "terminationGraceMarginSeconds must be at least 5" }}
{{- end }}
{{- add (int .Values.stopTimeoutSeconds) (int .Values.terminationGraceMarginSeconds) }}
{{- end }}

{{/* A role's task queue: its own, else the global one. */}}
{{- define "adaptq.taskQueue" -}}
{{- $r := index .root.Values.roles .role }}
{{- default .root.Values.temporal.taskQueue $r.taskQueue }}
{{- end }}

{{/* The roles the chart knows, in a fixed order. */}}
{{- define "adaptq.roleNames" -}}
quantize eval
{{- end }}

{{/* The object-store variables, each from the S3 Secret by reference. */}}
{{- define "adaptq.s3Env" -}}
{{- $s := .Values.s3 -}}
- name: ADAPTQ_S3_ENDPOINT
  valueFrom:
    secretKeyRef:
      name: {{ $s.secretName }}
      key: {{ $s.keys.endpoint }}
      optional: true
- name: ADAPTQ_S3_TLS
  valueFrom:
    secretKeyRef:
      name: {{ $s.secretName }}
      key: {{ $s.keys.tls }}
      optional: true
- name: AWS_REGION
  valueFrom:
    secretKeyRef:
      name: {{ $s.secretName }}
      key: {{ $s.keys.region }}
      optional: true
{{- if $s.staticCredentials }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $s.secretName }}
      key: {{ $s.keys.accessKeyId }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $s.secretName }}
      key: {{ $s.keys.secretAccessKey }}
- name: AWS_SESSION_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $s.secretName }}
      key: {{ $s.keys.sessionToken }}
      optional: true
{{- end }}
{{- end }}
