{{/*
Helpers of the todo chart. Every helper is named "todo.*". Helpers that concern one component take
a dict: (dict "root" $ "component" "api").
*/}}

{{/* The chart name, 63 characters at most. */}}
{{- define "todo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name prefix of every resource: the release name, plus the chart name unless it is in it. */}}
{{- define "todo.fullname" -}}
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

{{/* The name of one component's resources: <fullname>-<component>, at most 63 characters, the suffix kept whole. */}}
{{- define "todo.componentName" -}}
{{- $max := int (sub 62 (len .component)) }}
{{- printf "%s-%s" (include "todo.fullname" .root | trunc $max | trimSuffix "-") .component }}
{{- end }}

{{/* chart label value. */}}
{{- define "todo.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels; with a component when .component is set. */}}
{{- define "todo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "todo.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{/* Standard labels of every object. */}}
{{- define "todo.labels" -}}
helm.sh/chart: {{ include "todo.chart" .root }}
{{ include "todo.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: todo
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{/* The ServiceAccount the pods run as. */}}
{{- define "todo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "todo.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image reference of a component: [registry/]repository:tag[@digest]. */}}
{{- define "todo.image" -}}
{{- $image := .root.Values.image }}
{{- $component := (index .root.Values .component).image }}
{{- $tag := default .root.Chart.AppVersion $image.tag }}
{{- $reference := printf "%s:%s" $component.repository $tag }}
{{- if $image.registry }}
{{- $reference = printf "%s/%s" (trimSuffix "/" $image.registry) $reference }}
{{- end }}
{{- with $component.digest }}
{{- $reference = printf "%s@%s" $reference . }}
{{- end }}
{{- $reference }}
{{- end }}

{{/* Pod securityContext: Pod Security "restricted". */}}
{{- define "todo.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container securityContext: Pod Security "restricted" plus a read-only root filesystem. */}}
{{- define "todo.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The writable folders of every pod (emptyDir): /tmp, the Prometheus multiprocess folder, TODO_STATE_DIR. */}}
{{- define "todo.volumes" -}}
- name: tmp
  emptyDir: {}
- name: metrics
  emptyDir: {}
- name: state
  emptyDir: {}
{{- end }}

{{- define "todo.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: metrics
  mountPath: /var/run/todo/metrics
- name: state
  mountPath: /var/lib/todo
{{- end }}

{{/*
Non-secret settings (ConfigMap data, and the migration hook's inline env): a YAML map of env name
to string value.
*/}}
{{- define "todo.configData" -}}
{{- $c := .Values.config }}
TODO_ENV: "production"
TODO_LOG_FORMAT: "json"
TODO_LOG_LEVEL: {{ $c.logLevel | quote }}
TODO_STATE_DIR: "/var/lib/todo"
TODO_USE_TOKEN_AUTH: {{ $c.useTokenAuth | toString | quote }}
TODO_TOKEN_TTL: {{ $c.tokenTtl | toString | quote }}
TODO_USE_RATE_LIMITS: {{ $c.useRateLimits | toString | quote }}
TODO_RATE_LIMIT: {{ $c.rateLimit | quote }}
TODO_TRUSTED_PROXIES: {{ $c.trustedProxies | toString | quote }}
TODO_FLUSH_INTERVAL: {{ $c.flushInterval | toString | quote }}
TODO_REDIS_KEY_PREFIX: {{ $c.redisKeyPrefix | quote }}
TODO_GRACEFUL_TIMEOUT: {{ $c.gracefulTimeout | toString | quote }}
TODO_DB_POOL_SIZE: {{ $c.dbPoolSize | toString | quote }}
TODO_DB_PREPARED_STATEMENTS: {{ $c.dbPreparedStatements | toString | quote }}
TODO_DB_TIMEOUT: {{ $c.dbTimeout | toString | quote }}
TODO_DB_STATEMENT_TIMEOUT: {{ $c.dbStatementTimeout | toString | quote }}
TODO_MAX_BODY_BYTES: {{ $c.maxBodyBytes | toString | quote }}
TODO_PER_PAGE_DEFAULT: {{ $c.perPageDefault | toString | quote }}
TODO_PER_PAGE_MAX: {{ $c.perPageMax | toString | quote }}
TODO_HITS_FLUSH_THRESHOLD: {{ $c.hitsFlushThreshold | toString | quote }}
{{- end }}

{{/*
Secret data the chart itself owns (keys secret-key, database-url, redis-url), as a YAML map of
key to plain value; empty when every value comes from existing Secrets.
*/}}
{{- define "todo.secretData" -}}
{{- if not .Values.existingSecret }}
secret-key: {{ required "secretKey or existingSecret is required: TODO_SECRET_KEY signs tokens (>= 32 bytes; e.g. openssl rand -hex 32)" .Values.secretKey | quote }}
{{- end }}
{{- if and (not .Values.database.existingSecret) (not .Values.database.host) }}
database-url: {{ required "database: set database.url, database.existingSecret or database.host (+ database.passwordSecret)" .Values.database.url | quote }}
{{- end }}
{{- if and (not .Values.redis.existingSecret) (not .Values.redis.host) }}
redis-url: {{ required "redis: set redis.url, redis.existingSecret or redis.host (Redis is the Celery broker and is required)" .Values.redis.url | quote }}
{{- end }}
{{- end }}

{{/*
The env list of a todo container (after envFrom of the ConfigMap): secrets from the chart Secret
.secretName or from existing Secrets, and the URLs of the host forms composed with dependent env
expansion (the password variable is defined first). .metricsPort adds TODO_METRICS_PORT, .multiproc
adds PROMETHEUS_MULTIPROC_DIR.
*/}}
{{- define "todo.env" -}}
{{- $v := .root.Values }}
{{- if $v.existingSecret }}
- name: TODO_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $v.existingSecret }}
      key: {{ $v.existingSecretKey }}
{{- else }}
- name: TODO_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: secret-key
{{- end }}
{{- $db := $v.database }}
{{- if $db.existingSecret }}
- name: TODO_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $db.existingSecret }}
      key: {{ $db.existingSecretKey }}
{{- else if $db.host }}
- name: DATABASE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ required "database.passwordSecret.name is required with database.host" $db.passwordSecret.name }}
      key: {{ $db.passwordSecret.key }}
- name: TODO_DATABASE_URL
  value: {{ printf "postgresql+asyncpg://%s:$(DATABASE_PASSWORD)@%s:%d/%s%s" $db.user $db.host (int $db.port) $db.name (ternary (printf "?%s" $db.options) "" (ne $db.options "")) | quote }}
{{- else }}
- name: TODO_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: database-url
{{- end }}
{{- $redis := $v.redis }}
{{- if $redis.existingSecret }}
- name: TODO_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $redis.existingSecret }}
      key: {{ $redis.existingSecretKey }}
{{- else if $redis.host }}
{{- if $redis.passwordSecret.name }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $redis.passwordSecret.name }}
      key: {{ $redis.passwordSecret.key }}
- name: TODO_REDIS_URL
  value: {{ printf "redis://:$(REDIS_PASSWORD)@%s:%d/%d" $redis.host (int $redis.port) (int $redis.db) | quote }}
{{- else }}
- name: TODO_REDIS_URL
  value: {{ printf "redis://%s:%d/%d" $redis.host (int $redis.port) (int $redis.db) | quote }}
{{- end }}
{{- else }}
- name: TODO_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: redis-url
{{- end }}
{{- if .metricsPort }}
- name: TODO_METRICS_PORT
  value: {{ .metricsPort | toString | quote }}
{{- end }}
{{- if .multiproc }}
- name: PROMETHEUS_MULTIPROC_DIR
  value: /var/run/todo/metrics
{{- end }}
{{- end }}

{{/* Name of the chart Secret (rendered only when it has data). */}}
{{- define "todo.secretName" -}}
{{- printf "%s-secret" (include "todo.fullname" .) }}
{{- end }}

{{/* Name of the ConfigMap. */}}
{{- define "todo.configMapName" -}}
{{- printf "%s-config" (include "todo.fullname" .) }}
{{- end }}

{{/* Pod template annotations that roll the pods when settings or chart secrets change. */}}
{{- define "todo.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/config/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print .Template.BasePath "/config/secret.yaml") . | sha256sum }}
{{- end }}

{{/* Tolerations / nodeSelector / spread constraints of a component's pods. */}}
{{- define "todo.scheduling" -}}
{{- $values := index .root.Values .component }}
{{- with $values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.topologySpreadConstraints }}
topologySpreadConstraints:
{{- range . }}
  - maxSkew: {{ .maxSkew }}
    topologyKey: {{ .topologyKey }}
    whenUnsatisfiable: {{ .whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "todo.selectorLabels" $ | nindent 8 }}
{{- end }}
{{- end }}
{{- end }}

{{/* Probe timing fields from a values map. */}}
{{- define "todo.probeTimings" -}}
initialDelaySeconds: {{ .initialDelaySeconds }}
periodSeconds: {{ .periodSeconds }}
timeoutSeconds: {{ .timeoutSeconds }}
failureThreshold: {{ .failureThreshold }}
{{- end }}

{{/* Checks across values that the schema cannot express; included by the ConfigMap (always rendered). */}}
{{- define "todo.validate" -}}
{{- $_ := include "todo.secretData" . }}{{/* runs its `required` checks */}}
{{- $api := .Values.api }}
{{- $needed := addf $api.preStopSeconds .Values.config.gracefulTimeout 5 }}
{{- if lt (float64 $api.terminationGracePeriodSeconds) $needed }}
{{- fail (printf "api.terminationGracePeriodSeconds (%v) must be >= api.preStopSeconds (%v) + config.gracefulTimeout (%v) + 5" $api.terminationGracePeriodSeconds $api.preStopSeconds .Values.config.gracefulTimeout) }}
{{- end }}
{{- if gt (int .Values.config.perPageDefault) (int .Values.config.perPageMax) }}
{{- fail "config.perPageDefault must not exceed config.perPageMax" }}
{{- end }}
{{- if and (not .Values.existingSecret) (lt (len .Values.secretKey) 32) }}
{{- fail "secretKey must be at least 32 bytes (the code refuses shorter keys in production); or set existingSecret" }}
{{- end }}
{{- if and (not .Values.database.existingSecret) (not .Values.database.host) .Values.database.url (not (hasPrefix "postgresql+asyncpg://" .Values.database.url)) }}
{{- fail "database.url must start with postgresql+asyncpg://" }}
{{- end }}
{{- end }}

{{/* The `to:` of an egress rule from networkPolicy.database / .redis; none = any destination. */}}
{{- define "todo.networkPolicyPeers" -}}
{{- if or .cidrs .namespaceSelector .podSelector }}
to:
{{- range .cidrs }}
  - ipBlock:
      cidr: {{ . | quote }}
{{- end }}
{{- $peer := dict }}
{{- with .namespaceSelector }}{{ $_ := set $peer "namespaceSelector" (dict "matchLabels" .) }}{{ end }}
{{- with .podSelector }}{{ $_ := set $peer "podSelector" (dict "matchLabels" .) }}{{ end }}
{{- with $peer }}
  - {{ toYaml . | indent 4 | trim }}
{{- end }}
{{- end }}
{{- end }}

{{/* The public API's path prefixes: all the Ingress and the HTTPRoute may route to the api. */}}
{{- define "todo.apiPathPrefixes" -}}
- /api
- /auth
{{- end }}

{{/*
The Ingress rules as a YAML list of {host, paths: [{path, pathType}]}: ingress.hosts, a host's
missing paths being both API prefixes; the deprecated ingress.host, when set, is the one rule.
*/}}
{{- define "todo.ingress.hosts" -}}
{{- $prefixes := list }}
{{- range (include "todo.apiPathPrefixes" . | fromYamlArray) }}
{{- $prefixes = append $prefixes (dict "path" . "pathType" "Prefix") }}
{{- end }}
{{- $hosts := .Values.ingress.hosts }}
{{- with .Values.ingress.host }}
{{- $hosts = list (dict "host" .) }}
{{- end }}
{{- $rules := list }}
{{- range $hosts }}
{{- $rules = append $rules (dict "host" (.host | default "") "paths" (.paths | default $prefixes)) }}
{{- end }}
{{- toYaml $rules }}
{{- end }}
