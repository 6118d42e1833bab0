{{/* Names: <release>-vigil (or fullnameOverride), each component suffixed. */}}
{{- define "vigil.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "vigil.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A component's name: include "vigil.component" (list . "agent") */}}
{{- define "vigil.component" -}}
{{- printf "%s-%s" (include "vigil.fullname" (index . 0)) (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "vigil.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "vigil.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vigil
{{- end -}}

{{/* Labels of a component's objects: include "vigil.componentLabels" (list . "agent") */}}
{{- define "vigil.componentLabels" -}}
{{ include "vigil.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Selector labels never change across upgrades: name, instance, component. */}}
{{- define "vigil.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vigil.name" (index . 0) }}
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "vigil.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "vigil.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "vigil.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "vigil.secretName" -}}
{{- default (include "vigil.component" (list . "secrets")) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* Where every pod finds the config and where its state lives (the chart owns both paths). */}}
{{- define "vigil.configDir" -}}/etc/vigil{{- end -}}
{{- define "vigil.secretsDir" -}}/etc/vigil/secrets{{- end -}}
{{- define "vigil.dataDir" -}}/var/lib/vigil{{- end -}}

{{/*
The Vigil config file: the user's `config` with the keys the pods depend on set by the chart (they
must match the mounts, ports and probes below, so a value cannot move them out from under the pods).
*/}}
{{- define "vigil.config" -}}
{{- $owned := dict
  "data_dir" (include "vigil.dataDir" .)
  "agent" (dict "metrics_address" "0.0.0.0" "metrics_port" (int .Values.agent.port))
  "alerting" (dict "api" (dict "host" "0.0.0.0" "port" (int .Values.alerting.port) "enabled" true))
-}}
{{- toYaml (mergeOverwrite (deepCopy .Values.config) $owned) -}}
{{- end -}}

{{/* The telemetry topic's partitions; 8 is Vigil's own default (vigil/config.py TopicsConfig). */}}
{{- define "vigil.telemetryPartitions" -}}
{{- dig "kafka" "topics" "partitions" "telemetry" 8 .Values.config | int -}}
{{- end -}}

{{/* The kernel log source the agent's config asks for: kmsg, file, or "" when the collector is off. */}}
{{- define "vigil.kernelLogSource" -}}
{{- $collector := dig "agent" "collectors" "kernel_log" nil .Values.config -}}
{{- if and (kindIs "map" $collector) (ne (toString (dig "enabled" true $collector)) "false") -}}
{{- dig "source" "kmsg" $collector -}}
{{- end -}}
{{- end -}}

{{/* Whether a component runs: include "vigil.enabled" (list . "sink") is "true" or "false". */}}
{{- define "vigil.enabled" -}}
{{- $values := (index . 0).Values -}}
{{- if eq (index . 1) "sink" -}}{{ $values.sink.influx.enabled }}{{- else -}}{{ (index $values (index . 1)).enabled }}{{- end -}}
{{- end -}}

{{/* Checks that need two values at once (values.schema.json checks each value on its own). */}}
{{- define "vigil.validate" -}}
{{- $partitions := include "vigil.telemetryPartitions" . | int -}}
{{- if and .Values.analytics.enabled (gt (int .Values.analytics.replicas) $partitions) -}}
{{- fail (printf "analytics.replicas (%d) exceeds config.kafka.topics.partitions.telemetry (%d): a consumer group never gives one partition to two consumers, so the extra replicas would sit idle" (int .Values.analytics.replicas) $partitions) -}}
{{- end -}}
{{- $state := .Values.analytics.state.persistence -}}
{{- if and $state.enabled (gt (int .Values.analytics.replicas) 1) (not $state.existingClaim) (not (has "ReadWriteMany" $state.accessModes)) -}}
{{- fail "analytics.replicas > 1 share one state volume (any replica may be given any partition): set analytics.state.persistence.accessModes to [ReadWriteMany]" -}}
{{- end -}}
{{- if .Values.sink.influx.enabled -}}
{{- if not (dig "sink" "influx" "url" "" .Values.config) -}}
{{- fail "sink.influx.enabled: set config.sink.influx.url, the InfluxDB or VictoriaMetrics the sink writes to (its token goes in secrets.config.sink.influx.token)" -}}
{{- end -}}
{{- if gt (int .Values.sink.influx.replicas) $partitions -}}
{{- fail (printf "sink.influx.replicas (%d) exceeds config.kafka.topics.partitions.telemetry (%d): the extra sinks would sit idle" (int .Values.sink.influx.replicas) $partitions) -}}
{{- end -}}
{{- end -}}
{{- if and (eq .Values.alerting.store.type "postgres") (not .Values.secrets.existingSecret) (not (dig "alerting" "store" "url" "" .Values.secrets.config)) -}}
{{- fail "alerting.store.type postgres: give alerting.store.url in secrets.config, or a secrets.existingSecret holding it" -}}
{{- end -}}
{{- if eq (include "vigil.kernelLogSource" .) "file" -}}
{{- $path := toString (dig "agent" "collectors" "kernel_log" "path" "" .Values.config) -}}
{{- if not (hasPrefix "/var/log/" $path) -}}
{{- fail (printf "config.agent.collectors.kernel_log.path %q: with source file the agent mounts the host's /var/log, so the path must be under it" $path) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Pod and container security for the non-root services (analytics, alerting). */}}
{{- define "vigil.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "vigil.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Probes on a component's /healthz: startup gives a slow first connect to Kafka two minutes. */}}
{{- define "vigil.probes" -}}
startupProbe:
  httpGet: {path: /healthz, port: {{ . }}}
  periodSeconds: 5
  failureThreshold: 24
livenessProbe:
  httpGet: {path: /healthz, port: {{ . }}}
  periodSeconds: 15
  timeoutSeconds: 5
  failureThreshold: 4
readinessProbe:
  httpGet: {path: /healthz, port: {{ . }}}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 2
{{- end -}}
