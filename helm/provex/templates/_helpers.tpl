{{/* Names, labels and the generated provex config. */}}

{{- define "provex.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "provex.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "provex.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "provex.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "provex.collectorName" -}}
{{- printf "%s-collector" (include "provex.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "provex.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "provex.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "provex.agentSelector" -}}
app.kubernetes.io/name: {{ include "provex.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: agent
{{- end -}}

{{- define "provex.collectorSelector" -}}
app.kubernetes.io/name: {{ include "provex.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: collector
{{- end -}}

{{- define "provex.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "provex.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository:tag or repository@digest. */}}
{{- define "provex.image" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .appVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The agent's OTLP endpoint: explicit, else the bundled collector, else none. */}}
{{- define "provex.otlpEndpoint" -}}
{{- if .Values.otlp.endpoint -}}
{{- .Values.otlp.endpoint -}}
{{- else if .Values.collector.enabled -}}
{{- $port := ternary 4317 4318 (eq .Values.otlp.protocol "grpc") -}}
{{- printf "http://%s.%s.svc:%d" (include "provex.collectorName" .) .Release.Namespace $port -}}
{{- end -}}
{{- end -}}

{{/*
The schema the agent ships: agent.schema, else what the destination reads: the
bundled collector's backend (Splunk indexes OCSF, Elasticsearch and Loki ECS),
ECS for another OTLP endpoint, raw JSON lines on stdout with no endpoint at all.
*/}}
{{- define "provex.schema" -}}
{{- $endpoint := include "provex.otlpEndpoint" . -}}
{{- if .Values.agent.schema -}}
{{- if and (eq .Values.agent.schema "raw") $endpoint -}}
{{- fail (printf "agent.schema=raw writes JSON lines on stdout, but the agent exports OTLP to %s: choose ecs or ocsf, or leave agent.schema empty" $endpoint) -}}
{{- end -}}
{{- .Values.agent.schema -}}
{{- else if .Values.collector.enabled -}}
{{- ternary "ocsf" "ecs" (eq .Values.collector.backend "splunk") -}}
{{- else if $endpoint -}}
ecs
{{- else -}}
raw
{{- end -}}
{{- end -}}

{{/* https when the agent serves its endpoints with TLS. */}}
{{- define "provex.metricsScheme" -}}
{{- ternary "https" "http" (ne .Values.metrics.tls.existingSecret "") -}}
{{- end -}}

{{/* Capabilities the agent gets; the README says why each one. */}}
{{- define "provex.capabilities" -}}
{{- $caps := list "BPF" "PERFMON" "SYS_RESOURCE" "SYS_PTRACE" -}}
{{- if .Values.agent.securityContext.nonRoot -}}
{{- $caps = append $caps "DAC_READ_SEARCH" -}}
{{- end -}}
{{- if .Values.agent.securityContext.sysAdmin -}}
{{- $caps = append $caps "SYS_ADMIN" -}}
{{- end -}}
{{- toYaml $caps -}}
{{- end -}}

{{/*
The provex config file: what the chart decides, with agent.config merged over
it. rules_dirs is appended to, so user rules from values always load.
*/}}
{{- define "provex.config" -}}
{{- $otlp := dict "protocol" .Values.otlp.protocol -}}
{{- $endpoint := include "provex.otlpEndpoint" . -}}
{{- if $endpoint -}}
{{- $_ := set $otlp "endpoint" $endpoint -}}
{{- end -}}
{{- if kindIs "bool" .Values.otlp.insecure -}}
{{- $_ := set $otlp "insecure" .Values.otlp.insecure -}}
{{- else if and .Values.collector.enabled (not .Values.otlp.endpoint) -}}
{{- $_ := set $otlp "insecure" true -}}
{{- end -}}
{{- if .Values.otlp.headers -}}
{{- $_ := set $otlp "headers" .Values.otlp.headers -}}
{{- end -}}
{{- $server := dict -}}
{{- if .Values.metrics.tls.existingSecret -}}
{{- $_ := set $server "tls_cert_file" "/etc/provex/tls/tls.crt" -}}
{{- $_ := set $server "tls_key_file" "/etc/provex/tls/tls.key" -}}
{{- end -}}
{{- if .Values.metrics.authorization.existingSecret -}}
{{- $_ := set $server "metrics_token_file" (printf "/etc/provex/metrics-token/%s" .Values.metrics.authorization.key) -}}
{{- end -}}
{{/* server.health_addr is the Pod's own IP, given on the command line (see the DaemonSet). */}}
{{- $cfg := dict
  "probes" (dict "monitor" .Values.agent.monitor)
  "output" (dict "schema" (include "provex.schema" .) "otlp" $otlp)
  "enrich" (dict "kubernetes" true)
  "log" (dict "level" .Values.agent.logLevel) -}}
{{- if $server -}}
{{- $_ := set $cfg "server" $server -}}
{{- end -}}
{{- $user := deepCopy .Values.agent.config -}}
{{- $dirs := list -}}
{{- with $user.correlate -}}
{{- $dirs = .rules_dirs | default (list) -}}
{{- end -}}
{{- $cfg = mustMergeOverwrite $cfg $user -}}
{{- $_ := set $cfg "correlate" (merge (dict "rules_dirs" (append $dirs "/etc/provex/rules")) (get $cfg "correlate" | default (dict))) -}}
{{- toYaml $cfg -}}
{{- end -}}
