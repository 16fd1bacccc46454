{{/*
The OpenTelemetry Collector config: OTLP receiver -> memory_limiter -> batch
-> one exporter per backend. Credentials come from existing Secrets through
environment variables (${env:...}), never from values.
These templates mirror otel-collector/ in the repository.
*/}}

{{- define "provex.collector.exporter" -}}
{{- $c := .Values.collector -}}
{{- if eq $c.backend "elasticsearch" -}}
elasticsearch:
  endpoints: [{{ $c.elasticsearch.endpoint | quote }}]
  logs_index: {{ $c.elasticsearch.index | quote }}
  # provex ships ECS documents as the log body: index the body as it is.
  mapping:
    mode: bodymap
  {{- if $c.elasticsearch.auth.existingSecret }}
  user: ${env:ELASTICSEARCH_USERNAME}
  password: ${env:ELASTICSEARCH_PASSWORD}
  {{- end }}
  tls:
    insecure_skip_verify: {{ $c.elasticsearch.insecureSkipVerify }}
  retry:
    enabled: true
{{- else if eq $c.backend "loki" -}}
otlphttp/loki:
  endpoint: {{ $c.loki.endpoint | quote }}
  {{- if or $c.loki.tenant $c.loki.auth.existingSecret }}
  {{- if $c.loki.tenant }}
  headers:
    X-Scope-OrgID: {{ $c.loki.tenant | quote }}
  {{- end }}
  {{- if $c.loki.auth.existingSecret }}
  auth:
    authenticator: basicauth/loki
  {{- end }}
  {{- end }}
  retry_on_failure:
    enabled: true
{{- else if eq $c.backend "splunk" -}}
splunk_hec:
  endpoint: {{ $c.splunk.endpoint | quote }}
  token: ${env:SPLUNK_HEC_TOKEN}
  index: {{ $c.splunk.index | quote }}
  source: {{ $c.splunk.source | quote }}
  sourcetype: {{ $c.splunk.sourcetype | quote }}
  tls:
    insecure_skip_verify: {{ $c.splunk.insecureSkipVerify }}
  retry_on_failure:
    enabled: true
{{- end -}}
{{- end -}}

{{- define "provex.collector.exporterName" -}}
{{- $b := .Values.collector.backend -}}
{{- if eq $b "elasticsearch" }}elasticsearch{{ else if eq $b "loki" }}otlphttp/loki{{ else }}splunk_hec{{ end -}}
{{- end -}}

{{- define "provex.collector.config" -}}
{{- $c := .Values.collector -}}
{{- $lokiAuth := and (eq $c.backend "loki") $c.loki.auth.existingSecret -}}
extensions:
  health_check:
    endpoint: ${env:MY_POD_IP}:13133
  {{- if $lokiAuth }}
  basicauth/loki:
    client_auth:
      username: ${env:LOKI_USERNAME}
      password: ${env:LOKI_PASSWORD}
  {{- end }}
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: ${env:MY_POD_IP}:4317
      http:
        endpoint: ${env:MY_POD_IP}:4318
processors:
  memory_limiter:
    check_interval: {{ $c.memoryLimiter.checkInterval }}
    limit_percentage: {{ $c.memoryLimiter.limitPercentage }}
    spike_limit_percentage: {{ $c.memoryLimiter.spikeLimitPercentage }}
  {{- if eq $c.backend "loki" }}
  # Loki indexes resource attributes as labels: promote the Pod's namespace
  # and name from the record to the resource.
  groupbyattrs:
    keys:
      - k8s.namespace.name
      - k8s.pod.name
  {{- end }}
  batch:
    timeout: {{ $c.batch.timeout }}
    send_batch_size: {{ $c.batch.sendBatchSize }}
exporters:
  {{- include "provex.collector.exporter" . | nindent 2 }}
service:
  extensions:
    - health_check
    {{- if $lokiAuth }}
    - basicauth/loki
    {{- end }}
  pipelines:
    logs:
      receivers: [otlp]
      processors:
        - memory_limiter
        {{- if eq $c.backend "loki" }}
        - groupbyattrs
        {{- end }}
        - batch
      exporters: [{{ include "provex.collector.exporterName" . }}]
{{- end -}}

{{/* Secret-backed environment for the chosen backend. */}}
{{- define "provex.collector.env" -}}
{{- $c := .Values.collector -}}
- name: MY_POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: GOMEMLIMIT
  value: {{ printf "%dMiB" (div (mul (include "provex.memMiB" $c.resources.limits.memory | int) 80) 100) | quote }}
{{- if and (eq $c.backend "elasticsearch") $c.elasticsearch.auth.existingSecret }}
- name: ELASTICSEARCH_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $c.elasticsearch.auth.existingSecret }}
      key: {{ $c.elasticsearch.auth.usernameKey }}
- name: ELASTICSEARCH_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $c.elasticsearch.auth.existingSecret }}
      key: {{ $c.elasticsearch.auth.passwordKey }}
{{- else if and (eq $c.backend "loki") $c.loki.auth.existingSecret }}
- name: LOKI_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $c.loki.auth.existingSecret }}
      key: {{ $c.loki.auth.usernameKey }}
- name: LOKI_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $c.loki.auth.existingSecret }}
      key: {{ $c.loki.auth.passwordKey }}
{{- else if eq $c.backend "splunk" }}
- name: SPLUNK_HEC_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ required "collector.splunk.token.existingSecret: the Splunk backend needs an existing Secret with the HEC token" $c.splunk.token.existingSecret }}
      key: {{ $c.splunk.token.key }}
{{- end }}
{{- end -}}

{{/* A memory quantity (Mi, Gi, M, G or plain bytes) in MiB, for GOMEMLIMIT. */}}
{{- define "provex.memMiB" -}}
{{- $q := toString . -}}
{{- if hasSuffix "Gi" $q -}}{{ mul (trimSuffix "Gi" $q | int) 1024 }}
{{- else if hasSuffix "Mi" $q -}}{{ trimSuffix "Mi" $q | int }}
{{- else if hasSuffix "G" $q -}}{{ div (mul (trimSuffix "G" $q | int64) 1000000000) 1048576 }}
{{- else if hasSuffix "M" $q -}}{{ div (mul (trimSuffix "M" $q | int64) 1000000) 1048576 }}
{{- else -}}{{ div ($q | int64) 1048576 }}
{{- end -}}
{{- end -}}
