{{/*
The OpenTelemetry Collector config. Two pipelines from one OTLP receiver:
  logs/alerts: memory_limiter -> filter (alerts only) -> exporter, no batch:
               an alert never waits behind a batch timer or a backlog of events;
  logs/events: memory_limiter -> filter (events only) -> batch -> exporter.
Each pipeline has its own exporter, hence its own queue. provex's emit stage
puts alerts in the instrumentation scope "provex.alerts".
Credentials come from existing Secrets through environment variables
(${env:...}), never from values. Reconcile with otel-collector/ when merging.
*/}}

{{- define "provex.collector.alertsScope" -}}provex.alerts{{- end -}}

{{/* One exporter; .kind is "alerts" or "events". */}}
{{- define "provex.collector.exporter" -}}
{{- $c := .root.Values.collector -}}
{{- $alerts := eq .kind "alerts" -}}
{{- if eq $c.backend "elasticsearch" -}}
elasticsearch/{{ .kind }}:
  endpoints: [{{ $c.elasticsearch.endpoint | quote }}]
  logs_index: {{ ternary $c.elasticsearch.alertsIndex $c.elasticsearch.eventsIndex $alerts | quote }}
  # The body (provex's document) is indexed as it is: the `elastic.mapping.mode: bodymap`
  # scope attribute says so (transform/bodymap); `mapping::mode` is deprecated since v0.144.0.
  {{- if $c.elasticsearch.auth.existingSecret }}
  user: ${env:ELASTICSEARCH_USERNAME}
  password: ${env:ELASTICSEARCH_PASSWORD}
  {{- end }}
  tls:
    insecure_skip_verify: {{ $c.elasticsearch.insecureSkipVerify }}
  # The bulk indexer holds documents until this interval (default 30 s).
  flush:
    interval: {{ ternary "100ms" $c.batch.timeout $alerts }}
  sending_queue:
    enabled: true
    queue_size: {{ ternary 2000 20000 $alerts }}
  # elasticsearch retries per bulk request (it has no retry_on_failure).
  retry:
    enabled: true
    max_retries: {{ ternary 10 5 $alerts }}
    initial_interval: {{ ternary "100ms" "1s" $alerts }}
    max_interval: {{ ternary "5s" "30s" $alerts }}
{{- else -}}
{{- if eq $c.backend "loki" -}}
otlp_http/{{ .kind }}:
  endpoint: {{ $c.loki.endpoint | quote }}
  {{- if $c.loki.tenant }}
  headers:
    X-Scope-OrgID: {{ $c.loki.tenant | quote }}
  {{- end }}
  {{- if $c.loki.auth.existingSecret }}
  auth:
    authenticator: basicauth/loki
  {{- end }}
{{- else if eq $c.backend "splunk" -}}
splunk_hec/{{ .kind }}:
  endpoint: {{ $c.splunk.endpoint | quote }}
  token: ${env:SPLUNK_HEC_TOKEN}
  index: {{ $c.splunk.index | quote }}
  source: {{ $c.splunk.source | quote }}
  sourcetype: {{ ternary $c.splunk.alertsSourcetype $c.splunk.eventsSourcetype $alerts | quote }}
  tls:
    insecure_skip_verify: {{ $c.splunk.insecureSkipVerify }}
{{- end }}
  sending_queue:
    enabled: true
    queue_size: {{ ternary 2000 20000 $alerts }}
  retry_on_failure:
    enabled: true
    initial_interval: {{ ternary "200ms" "1s" $alerts }}
    max_interval: {{ ternary "10s" "30s" $alerts }}
    # Alerts are retried until the queue is full; events give up after 5 minutes.
    max_elapsed_time: {{ ternary "0s" "300s" $alerts }}
{{- end -}}
{{- end -}}

{{- define "provex.collector.exporterName" -}}
{{- $b := .root.Values.collector.backend -}}
{{- if eq $b "elasticsearch" }}elasticsearch{{ else if eq $b "loki" }}otlp_http{{ else }}splunk_hec{{ end }}/{{ .kind -}}
{{- end -}}

{{- define "provex.collector.config" -}}
{{- $c := .Values.collector -}}
{{- $loki := eq $c.backend "loki" -}}
{{- $elastic := eq $c.backend "elasticsearch" -}}
{{- $lokiAuth := and $loki $c.loki.auth.existingSecret -}}
{{- $scope := include "provex.collector.alertsScope" . -}}
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
  # filter drops the records its condition matches.
  filter/only_alerts:
    error_mode: ignore
    logs:
      log_record:
        - instrumentation_scope.name != {{ $scope | quote }}
  filter/only_events:
    error_mode: ignore
    logs:
      log_record:
        - instrumentation_scope.name == {{ $scope | quote }}
  {{- if $elastic }}
  # The Elasticsearch exporter picks its mapping mode per scope: bodymap indexes
  # the body verbatim. provex sets it on its scopes; set it again in case a hop
  # in between rewrote the scope.
  transform/bodymap:
    error_mode: ignore
    log_statements:
      - context: scope
        statements:
          - set(attributes["elastic.mapping.mode"], "bodymap")
  {{- end }}
  {{- if $loki }}
  # Loki indexes resource attributes as labels: promote the Pod's namespace
  # and name from the record to the resource.
  groupbyattrs:
    keys:
      - k8s.namespace.name
      - k8s.pod.name
  {{- end }}
  batch/events:
    timeout: {{ $c.batch.timeout }}
    send_batch_size: {{ $c.batch.sendBatchSize }}
exporters:
  {{- include "provex.collector.exporter" (dict "root" . "kind" "alerts") | nindent 2 }}
  {{- include "provex.collector.exporter" (dict "root" . "kind" "events") | nindent 2 }}
service:
  extensions:
    - health_check
    {{- if $lokiAuth }}
    - basicauth/loki
    {{- end }}
  pipelines:
    logs/alerts:
      receivers: [otlp]
      processors:
        - memory_limiter
        - filter/only_alerts
        {{- if $elastic }}
        - transform/bodymap
        {{- end }}
        {{- if $loki }}
        - groupbyattrs
        {{- end }}
      exporters: [{{ include "provex.collector.exporterName" (dict "root" . "kind" "alerts") }}]
    logs/events:
      receivers: [otlp]
      processors:
        - memory_limiter
        - filter/only_events
        {{- if $elastic }}
        - transform/bodymap
        {{- end }}
        {{- if $loki }}
        - groupbyattrs
        {{- end }}
        - batch/events
      exporters: [{{ include "provex.collector.exporterName" (dict "root" . "kind" "events") }}]
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
