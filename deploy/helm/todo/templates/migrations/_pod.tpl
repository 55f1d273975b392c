{{/*
The pod template of the migrations Job. As a hook it runs before the release's ConfigMap, Secret
and ServiceAccount exist, so it then takes its settings inline, its chart-owned secrets from its own
hook Secret <fullname>-migrations, and the namespace's default ServiceAccount (unless an existing one
is named with serviceAccount.create=false).
*/}}
{{- define "todo.migrations.podTemplate" -}}
{{- $ctx := dict "root" . "component" "migrations" }}
{{- $m := .Values.migrations }}
metadata:
  labels:
    {{- include "todo.labels" $ctx | nindent 4 }}
    {{- with $m.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $m.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  restartPolicy: Never
  {{- if or (not $m.useHooks) (not .Values.serviceAccount.create) }}
  serviceAccountName: {{ include "todo.serviceAccountName" . }}
  {{- end }}
  automountServiceAccountToken: false
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- include "todo.podSecurityContext" . | nindent 4 }}
  {{- with include "todo.scheduling" $ctx | trim }}{{ . | nindent 2 }}{{ end }}
  containers:
    - name: migrate
      image: {{ include "todo.image" (dict "root" . "component" "api") }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      command:
        - todoctl
        - migrate
        - --wait
        - {{ $m.waitSeconds | toString | quote }}
      {{- if $m.useHooks }}
      env:
        {{- $config := include "todo.configData" . | fromYaml }}
        {{- range $name := keys $config | sortAlpha }}
        - name: {{ $name }}
          value: {{ index $config $name | toString | quote }}
        {{- end }}
        {{- include "todo.env" (dict "root" . "secretName" (include "todo.migrations.secretName" .)) | trim | nindent 8 }}
      {{- else }}
      envFrom:
        - configMapRef:
            name: {{ include "todo.configMapName" . }}
      env:
        {{- include "todo.env" (dict "root" . "secretName" (include "todo.secretName" .)) | trim | nindent 8 }}
      {{- end }}
      resources:
        {{- toYaml $m.resources | nindent 8 }}
      securityContext:
        {{- include "todo.containerSecurityContext" . | nindent 8 }}
      volumeMounts:
        {{- include "todo.volumeMounts" . | nindent 8 }}
  volumes:
    {{- include "todo.volumes" . | nindent 4 }}
{{- end }}

{{/* The hook Secret of the migrations Job. */}}
{{- define "todo.migrations.secretName" -}}
{{- printf "%s-migrations" (include "todo.fullname" . | trunc 52 | trimSuffix "-") }}
{{- end }}

{{/*
The Job's name: fixed as a hook (recreated by before-hook-creation); as a plain Job it carries a
hash of its pod template, since a Job's template is immutable: a changed image or setting gives a
new Job, and the old one is pruned.
*/}}
{{- define "todo.migrations.jobName" -}}
{{- $base := printf "%s-migrations" (include "todo.fullname" . | trunc 43 | trimSuffix "-") }}
{{- if .Values.migrations.useHooks }}
{{- $base }}
{{- else }}
{{- printf "%s-%s" $base (include "todo.migrations.podTemplate" . | sha256sum | trunc 8) }}
{{- end }}
{{- end }}

{{/*
The initContainers of a component's pods (dict "root" $ "component" "api"): with useHooks=false
the migrations Job is a plain Job that runs beside the new pods, so they first wait, with their own
image and settings, until the schema is at the code's newest migration (`todoctl
wait-for-migrations`, which only reads). Nothing with useHooks=true: the hook has run already.
*/}}
{{- define "todo.migrations.initContainers" -}}
{{- $m := .root.Values.migrations }}
{{- if and $m.enabled (not $m.useHooks) }}
initContainers:
  - name: wait-for-migrations
    image: {{ include "todo.image" . }}
    imagePullPolicy: {{ .root.Values.image.pullPolicy }}
    command:
      - todoctl
      - wait-for-migrations
      - --timeout
      - {{ $m.waitTimeoutSeconds | toString | quote }}
    envFrom:
      - configMapRef:
          name: {{ include "todo.configMapName" .root }}
    env:
      {{- include "todo.env" (dict "root" .root "secretName" (include "todo.secretName" .root)) | trim | nindent 6 }}
    resources:
      {{- toYaml $m.waitResources | nindent 6 }}
    securityContext:
      {{- include "todo.containerSecurityContext" .root | nindent 6 }}
    volumeMounts:
      {{- include "todo.volumeMounts" .root | nindent 6 }}
{{- end }}
{{- end }}
