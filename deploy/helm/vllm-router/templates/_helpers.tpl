{{/* Chart name, truncated to a DNS label. */}}
{{- define "vllm-router.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified release name: <release>-<chart> unless the release already contains it. Service
names must be DNS-1035 labels (start with a letter): a release name starting with a digit gives
<chart>-<release> instead ("1st" -> "vllm-router-1st").
*/}}
{{- define "vllm-router.fullname" -}}
{{- $full := "" }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if .Values.fullnameOverride }}
{{- $full = .Values.fullnameOverride }}
{{- else if contains $name .Release.Name }}
{{- $full = .Release.Name }}
{{- else }}
{{- $full = printf "%s-%s" .Release.Name $name }}
{{- end }}
{{- if not (regexMatch "^[a-z]" $full) }}
{{- $full = printf "%s-%s" $name .Release.Name }}
{{- end }}
{{- $full = $full | trunc 63 | trimSuffix "-" }}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $full) }}
{{- fail (printf "the object names %q are not DNS-1035 labels (lower case letters, digits, '-', starting with a letter): set fullnameOverride" $full) }}
{{- end }}
{{- $full }}
{{- end }}

{{/* True (non-empty) when the router discovers the model pods through the Kubernetes API. */}}
{{- define "vllm-router.discovery" -}}
{{- if .Values.discovery.kubernetes.enabled }}true{{ end }}
{{- end }}

{{- define "vllm-router.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "vllm-router.labels" -}}
helm.sh/chart: {{ include "vllm-router.chart" . }}
{{ include "vllm-router.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "vllm-router.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vllm-router.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The router's pods. */}}
{{- define "vllm-router.router.selectorLabels" -}}
{{ include "vllm-router.selectorLabels" . }}
app.kubernetes.io/component: router
{{- end }}

{{- define "vllm-router.router.labels" -}}
{{ include "vllm-router.labels" . }}
app.kubernetes.io/component: router
{{- end }}

{{- define "vllm-router.router.image" -}}
{{- $img := .Values.router.image }}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion (toString (default "" $img.tag))) }}
{{- end }}

{{/* The headless Service naming every router pod, for replica sync (router.replicaSync). */}}
{{- define "vllm-router.replicaSyncServiceName" -}}
{{- printf "%s-sync" (include "vllm-router.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vllm-router.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vllm-router.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "vllm-router.apiKeysSecretName" -}}
{{- if .Values.router.apiKeys.existingSecret }}
{{- .Values.router.apiKeys.existingSecret }}
{{- else if .Values.router.apiKeys.keys }}
{{- printf "%s-api-keys" (include "vllm-router.fullname" .) }}
{{- end }}
{{- end }}

{{/*
The models with modelDefaults applied, as YAML {"models": [...]}; use it as
  {{- $models := (include "vllm-router.models" . | fromYaml).models }}
A model's key replaces the default's; for the maps image, storage, hfToken, service and shm the
replacement is per key (two levels deep: storage.persistentVolumeClaim.size). Adds: fullname
(object names), servedNames (default [model]), url (the Service URL the router is given, when
deployed). Disabled models (enabled: false) are dropped.
*/}}
{{- define "vllm-router.models" -}}
{{- $root := . }}
{{- $fullname := include "vllm-router.fullname" . }}
{{- $out := list }}
{{- $seen := dict }}
{{- range $i, $m := .Values.models }}
{{- if not (kindIs "map" $m) }}
{{- fail (printf "models[%d]: expected a map with name and model" $i) }}
{{- end }}
{{- if or (not (hasKey $m "enabled")) $m.enabled }}
{{- $merged := deepCopy $root.Values.modelDefaults }}
{{- range $k, $v := $m }}
{{- $d := get $merged $k }}
{{- if and (has $k (list "image" "storage" "hfToken" "service" "shm" "keda")) (kindIs "map" $v) (kindIs "map" $d) }}
{{- range $k2, $v2 := $v }}
{{- $d2 := get $d $k2 }}
{{- if and (kindIs "map" $v2) (kindIs "map" $d2) }}
{{- range $k3, $v3 := $v2 }}
{{- $_ := set $d2 $k3 (deepCopy $v3) }}
{{- end }}
{{- else }}
{{- $_ := set $d $k2 (deepCopy $v2) }}
{{- end }}
{{- end }}
{{- else }}
{{- $_ := set $merged $k (deepCopy $v) }}
{{- end }}
{{- end }}
{{- $name := toString (required (printf "models[%d].name is required" $i) $merged.name) }}
{{- if or (gt (len $name) 63) (not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $name)) }}
{{- fail (printf "models[%d].name %q: must be a DNS label (lower case letters, digits, '-')" $i $name) }}
{{- end }}

{{- $modelId := toString (required (printf "models[%d].model is required (a Hugging Face id or a path)" $i) $merged.model) }}
{{- if not $merged.servedNames }}
{{- $_ := set $merged "servedNames" (list $modelId) }}
{{- end }}
{{- $mf := printf "%s-%s" $fullname $name | trunc 63 | trimSuffix "-" }}
{{- /* Objects are named by the truncated full name: two models must not share one. */}}
{{- if hasKey $seen $mf }}
{{- if eq (get $seen $mf) $name }}
{{- fail (printf "models[%d].name %q: used twice" $i $name) }}
{{- end }}
{{- fail (printf "models[%d].name %q: its objects would be named %q, like those of model %q (names are cut to 63 characters): shorten one" $i $name $mf (get $seen $mf)) }}
{{- end }}
{{- $_ := set $seen $mf $name }}
{{- $_ := set $merged "fullname" $mf }}
{{- if kindIs "invalid" $merged.service.headless }}
{{- $_ := set $merged.service "headless" (not (empty $root.Values.discovery.kubernetes.enabled)) }}
{{- end }}
{{- /* Rollouts: a deadline beyond the startup probe's allowance, a grace period beyond the longest stream. */}}
{{- $sp := $merged.startupProbe }}
{{- $startup := add (int64 (default 0 $sp.initialDelaySeconds)) (mul (int64 (default 10 $sp.periodSeconds)) (int64 (default 3 $sp.failureThreshold))) }}
{{- if not (int64 $merged.progressDeadlineSeconds) }}
{{- $_ := set $merged "progressDeadlineSeconds" (add $startup 600) }}
{{- else if le (int64 $merged.progressDeadlineSeconds) $startup }}
{{- fail (printf "models[%d] (%s): progressDeadlineSeconds %d must exceed the startup probe's allowance (%d s), or a slow load is reported as a failed rollout" $i $name (int64 $merged.progressDeadlineSeconds) $startup) }}
{{- end }}
{{- if not (int64 $merged.terminationGracePeriodSeconds) }}
{{- $_ := set $merged "terminationGracePeriodSeconds" (add (int64 $merged.preStopSleepSeconds) (div (add (int64 $root.Values.router.timeouts.readMs) 999) 1000) 30) }}
{{- end }}
{{- if $merged.deploy }}
{{- $_ := set $merged "url" (printf "http://%s.%s.svc.%s:%d" $mf $root.Release.Namespace $root.Values.clusterDomain (int64 $merged.port)) }}
{{- else if not $merged.endpoints }}
{{- fail (printf "models[%d] (%s): deploy is false, so endpoints must list the vLLM servers" $i $name) }}
{{- end }}
{{- $out = append $out $merged }}
{{- end }}
{{- end }}
{{- toYaml (dict "models" $out) }}
{{- end }}

{{/* Labels of one model's objects; call with (dict "root" $ "model" $m). */}}
{{- define "vllm-router.model.selectorLabels" -}}
{{ include "vllm-router.selectorLabels" .root }}
app.kubernetes.io/component: model
vllm-router.io/model: {{ .model.name }}
{{- end }}

{{- define "vllm-router.model.labels" -}}
{{ include "vllm-router.labels" .root }}
app.kubernetes.io/component: model
vllm-router.io/model: {{ .model.name }}
{{- with .model.role }}
vllm-router.io/role: {{ . }}
{{- end }}
{{- end }}

{{/*
Labels of a model's pods: no chart or app version, so a chart upgrade that changes nothing of a
model does not restart its vLLM pods (and reload its weights).
*/}}
{{- define "vllm-router.model.podLabels" -}}
{{ include "vllm-router.model.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- with .model.role }}
vllm-router.io/role: {{ . }}
{{- end }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of the router's pods: no chart version (the image tag says what runs). */}}
{{- define "vllm-router.router.podLabels" -}}
{{ include "vllm-router.router.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Where the router reads the vLLM API key (a mounted Secret), when one is set. */}}
{{- define "vllm-router.vllmApiKeyFile" -}}
{{- if .Values.vllmApiKey.existingSecret }}/etc/vllm-router-vllm-key/{{ .Values.vllmApiKey.secretKey }}{{ end }}
{{- end }}

{{/* The router's JSON config: the models and the settings that have no variable. */}}
{{- define "vllm-router.routerConfig" -}}
{{- $r := .Values.router }}
{{- $models := list }}
{{- $keyFile := include "vllm-router.vllmApiKeyFile" . }}
{{- $allModels := (include "vllm-router.models" . | fromYaml).models }}
{{- $serviceSources := list }}
{{- /* Prefill/decode disaggregation: role "prefill" entries become the prefill pool of the model
     with the same served name (with discovery, their pods join it by their role label). */}}
{{- $prefill := dict }}
{{- range $m := $allModels }}
{{- if eq (toString $m.role) "prefill" }}
{{- $pe := list }}
{{- if and $m.deploy (not $.Values.discovery.kubernetes.enabled) }}
{{- $pe = append $pe $m.url }}
{{- end }}
{{- range $e := $m.endpoints }}
{{- $pe = append $pe $e }}
{{- end }}
{{- $p := dict "endpoints" $pe }}
{{- if $m.policy }}
{{- $_ := set $p "policy" $m.policy }}
{{- end }}
{{- $_ := set $prefill (first $m.servedNames) $p }}
{{- end }}
{{- end }}
{{- range $m := $allModels }}
{{- if ne (toString $m.role) "prefill" }}
{{- $endpoints := list }}
{{- /* With Kubernetes discovery the router finds the model's ready pods itself. */}}
{{- if and $m.deploy (not $.Values.discovery.kubernetes.enabled) }}
{{- if $keyFile }}
{{- /* The key is read from the mounted Secret: the Service is a static source that names it. */}}
{{- $serviceSources = append $serviceSources (dict "type" "static" "model" (first $m.servedNames) "endpoints" (list $m.url) "api_key_file" $keyFile) }}
{{- else }}
{{- $endpoints = append $endpoints $m.url }}
{{- end }}
{{- end }}
{{- range $e := $m.endpoints }}
{{- $endpoints = append $endpoints $e }}
{{- end }}
{{- $entry := dict "name" (first $m.servedNames) "endpoints" $endpoints }}
{{- $aliases := concat (rest $m.servedNames) (default list $m.aliases) }}
{{- if $aliases }}
{{- $_ := set $entry "aliases" $aliases }}
{{- end }}
{{- if $m.loras }}
{{- $_ := set $entry "loras" $m.loras }}
{{- end }}
{{- if $m.policy }}
{{- $_ := set $entry "policy" $m.policy }}
{{- end }}
{{- with get $prefill (first $m.servedNames) }}
{{- $_ := set $entry "prefill" . }}
{{- end }}
{{- $entry = mergeOverwrite $entry (deepCopy (default dict $m.routerConfig)) }}
{{- $models = append $models $entry }}
{{- end }}
{{- end }}
{{- $cfg := dict
  "client_timeout_ms" (int64 $r.clientTimeoutMs)
  "drain_timeout_ms" (int64 $r.drainTimeoutMs)
  "max_attempts" (int64 $r.maxAttempts)
  "max_idle_connections" (int64 $r.maxIdleConnections)
  "timeouts" (dict "write_ms" (int64 $r.timeouts.writeMs))
  "models" $models }}
{{- $sources := list }}
{{- $k := .Values.discovery.kubernetes }}
{{- if $k.enabled }}
{{- $selector := $k.labelSelector }}
{{- if not $selector }}
{{- $selector = printf "app.kubernetes.io/name=%s,app.kubernetes.io/instance=%s,app.kubernetes.io/component=model" (include "vllm-router.name" .) .Release.Name }}
{{- end }}
{{- $port := $k.port }}
{{- if kindIs "float64" $port }}{{- $port = int64 $port }}{{- end }}
{{- $src := dict "type" "kubernetes" "namespace" (default .Release.Namespace $k.namespace) "label_selector" $selector "resource" $k.resource "port" $port "resync_ms" (int64 $k.resyncMs) }}
{{- /* EndpointSlices carry the Service's labels only: map each model's label to its served name. */}}
{{- $names := dict }}
{{- range $m := $allModels }}
{{- if $m.deploy }}
{{- $_ := set $names $m.name (first $m.servedNames) }}
{{- end }}
{{- end }}
{{- if and $names (eq $k.resource "endpointslices") }}
{{- $_ := set $src "model_label_names" $names }}
{{- end }}
{{- with $k.addressType }}
{{- $_ := set $src "address_type" . }}
{{- end }}
{{- if $keyFile }}
{{- $_ := set $src "api_key_file" $keyFile }}
{{- end }}
{{- if $k.discoverModels.enabled }}
{{- $_ := set $src "discover_models" (dict "interval_ms" (int64 $k.discoverModels.intervalMs)) }}
{{- end }}
{{- $sources = append $sources $src }}
{{- end }}
{{- range $e := $serviceSources }}
{{- $sources = append $sources $e }}
{{- end }}
{{- range $e := .Values.discovery.extra }}
{{- $sources = append $sources $e }}
{{- end }}
{{- if $sources }}
{{- $_ := set $cfg "discovery" $sources }}
{{- end }}
{{- $cfg = mergeOverwrite $cfg (deepCopy (default dict $r.extraConfig)) }}
{{- toPrettyJson $cfg }}
{{- end }}
