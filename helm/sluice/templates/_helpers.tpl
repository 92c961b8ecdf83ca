{{/* Chart name, truncated to the 63 characters a label value may have. */}}
{{- define "sluice.name" -}}
{{- default .Values.app.name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified name of the example workload and its objects. */}}
{{- define "sluice.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "sluice.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Prefix of sluice's own objects (ConfigMaps, ServiceAccount, monitoring):
     RELEASE-sluice. It depends on the release only, so that a parent chart's
     templates compute the same names (see _sidecar.tpl). */}}
{{- define "sluice.prefix" -}}
{{- printf "%s-sluice" .Release.Name | trunc 48 | trimSuffix "-" -}}
{{- end -}}

{{- define "sluice.serviceAccountName" -}}
{{- default (include "sluice.prefix" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The pods that run sluice: podSelector, or the example workload's. */}}
{{- define "sluice.podSelector" -}}
{{- if .Values.podSelector -}}
{{- toYaml .Values.podSelector -}}
{{- else -}}
{{- include "sluice.selectorLabels" . -}}
{{- end -}}
{{- end -}}

{{- define "sluice.labels" -}}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Labels of sluice's own objects. */}}
{{- define "sluice.componentLabels" -}}
{{ include "sluice.labels" . }}
app.kubernetes.io/component: sluice
{{- end -}}

{{/* sluice.config with sluice.global (the Redis of fleet-wide limits)
rendered into its `global:` section. */}}
{{- define "sluice.config" -}}
{{- $cfg := deepCopy .Values.sluice.config -}}
{{- $v := .Values.sluice.global | default dict -}}
{{- $sen := $v.sentinel | default dict -}}
{{- if and $v.redis $sen.addresses -}}
{{- fail "sluice.global: set redis or sentinel.addresses, not both" -}}
{{- end -}}
{{- if and $sen.addresses (not $sen.masterName) -}}
{{- fail "sluice.global.sentinel.masterName: required with sentinel.addresses (the name in `sentinel monitor`)" -}}
{{- end -}}
{{- if or $v.redis $sen.addresses -}}
{{- $g := $cfg.global | default dict -}}
{{- if $v.redis -}}
{{- $_ := set $g "redis" $v.redis -}}
{{- else -}}
{{- $_ := set $g "sentinel" (dict "addresses" $sen.addresses "master_name" $sen.masterName) -}}
{{- end -}}
{{- if $v.passwordSecretName -}}
{{- $_ := set $g "password_file" "/etc/sluice/redis/password" -}}
{{- end -}}
{{- if not (hasKey $g "expected_replicas") -}}
{{- $_ := set $g "expected_replicas" (int .Values.replicaCount) -}}
{{- end -}}
{{- $_ := set $cfg "global" $g -}}
{{- else if $v.passwordSecretName -}}
{{- fail "sluice.global.passwordSecretName: set sluice.global.redis or sentinel too" -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}
