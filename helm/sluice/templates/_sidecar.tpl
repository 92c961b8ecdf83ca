{{/*
The sluice sidecar as named templates, for this chart's example Deployment
and for your own (README.md, "Around an existing workload"). Each takes a
dict with
  top:    the root context ($) of the chart that renders the pod
  values: the sluice chart's values: .Values here, .Values.sluice (the
          dependency's name) in a parent chart
and reads only values.sluice, values.app (the shutdown budget),
values.terminationGracePeriodSeconds, values.metrics and top.Release, so it
renders the same pod in either place. Object names come from the release
(sluice.prefix), so they match the ConfigMaps this chart renders.

  sluice.sidecar.initContainers   initContainers[] entries (native; empty for classic)
  sluice.sidecar.containers       containers[] entries (classic; empty for native)
  sluice.sidecar.volumes          volumes[] entries
  sluice.sidecar.podAnnotations   metadata.annotations entries (scrape, config checksum)
  sluice.sidecar.terminationGracePeriodSeconds   the pod's grace period (a number)
  sluice.sidecar.appPreStopSeconds               how long the app's preStop sleeps
  sluice.sidecar.appLifecycle     the app container's lifecycle: (preStop sleep)
*/}}

{{/* Seconds (rounded up) of a sluice duration such as 20s, 1m30s, 500ms;
     fails the render with sluice check's message for one without a unit.
     dict: value, what (the value's name, for the message). */}}
{{- define "sluice.durationSeconds" -}}
{{- $d := toString .value -}}
{{- if not (regexMatch "^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$" $d) -}}
{{- fail (printf "%s: duration '%s' needs a unit: ms, s, m or h (e.g. 10s)" .what $d) -}}
{{- end -}}
{{- $units := dict "ms" 1.0 "s" 1000.0 "m" 60000.0 "h" 3600000.0 -}}
{{- $ms := 0.0 -}}
{{- range regexFindAll "[0-9]+(\\.[0-9]+)?(ms|s|m|h)" $d -1 -}}
{{- $unit := regexFind "(ms|s|m|h)$" . -}}
{{- $ms = addf $ms (mulf (float64 (trimSuffix $unit .)) (get $units $unit)) -}}
{{- end -}}
{{- ceil (divf $ms 1000.0) | int -}}
{{- end -}}

{{/* drain_timeout in seconds: sluice.config's, or the last drop-in's (name
     order, as sluice merges them) that sets one; sluice's default is 20s. */}}
{{- define "sluice.sidecar.drainSeconds" -}}
{{- $s := .values.sluice -}}
{{- $d := dict "value" ($s.config.drain_timeout | default "20s") "what" "sluice.config.drain_timeout" -}}
{{- range $file, $text := $s.dropins -}}
{{- $doc := fromYaml (toString $text) -}}
{{- if and (kindIs "map" $doc) (hasKey $doc "drain_timeout") (not (hasKey $doc "Error")) -}}
{{- if not (kindIs "invalid" (get $doc "drain_timeout")) -}}
{{- $d = dict "value" (get $doc "drain_timeout") "what" (printf "sluice.dropins.%s: drain_timeout" $file) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- include "sluice.durationSeconds" $d -}}
{{- end -}}

{{/* The app's preStop sleep: native, endpoint propagation only (sluice keeps
     proxying meanwhile and stops after the app); classic, also sluice's
     preStop and drain, which run at the same time. */}}
{{- define "sluice.sidecar.appPreStopSeconds" -}}
{{- $v := .values -}}
{{- if eq $v.sluice.sidecar "native" -}}
{{- $v.app.preStopSleepSeconds | int -}}
{{- else -}}
{{- max ($v.app.preStopSleepSeconds | int) (add $v.sluice.preStopSleepSeconds (include "sluice.sidecar.drainSeconds" .)) -}}
{{- end -}}
{{- end -}}

{{/* The shutdown budget: the app's preStop and shutdown, then (native)
     sluice's drain, plus 5 s for the processes to exit. A smaller
     terminationGracePeriodSeconds fails the render. */}}
{{- define "sluice.sidecar.terminationGracePeriodSeconds" -}}
{{- $v := .values -}}
{{- $pre := include "sluice.sidecar.appPreStopSeconds" . | int -}}
{{- $drain := include "sluice.sidecar.drainSeconds" . | int -}}
{{- $need := add $pre $v.app.shutdownSeconds 5 -}}
{{- if eq $v.sluice.sidecar "native" -}}
{{- $need = add $need $drain -}}
{{- end -}}
{{- if kindIs "invalid" $v.terminationGracePeriodSeconds -}}
{{- $need -}}
{{- else if lt ($v.terminationGracePeriodSeconds | int) ($need | int) -}}
{{- fail (printf "terminationGracePeriodSeconds=%d is shorter than the shutdown budget, %d s (%s sidecar: app preStop %d s + app.shutdownSeconds %d s%s + 5 s); raise it or leave it null" ($v.terminationGracePeriodSeconds | int) ($need | int) $v.sluice.sidecar $pre ($v.app.shutdownSeconds | int) (ternary (printf " + drain_timeout %d s" $drain) "" (eq $v.sluice.sidecar "native"))) -}}
{{- else -}}
{{- $v.terminationGracePeriodSeconds | int -}}
{{- end -}}
{{- end -}}

{{- define "sluice.sidecar.appLifecycle" -}}
lifecycle:
  preStop:
    exec: { command: ["sleep", "{{ include "sluice.sidecar.appPreStopSeconds" . }}"] }
{{- end -}}

{{/* The port of an IP:PORT address. dict: address, what. */}}
{{- define "sluice.sidecar.portOf" -}}
{{- $p := regexFind ":[0-9]+$" (toString .address) -}}
{{- if not $p -}}
{{- fail (printf "%s: '%s' is not an address IP:PORT" .what (toString .address)) -}}
{{- end -}}
{{- trimPrefix ":" $p -}}
{{- end -}}

{{- define "sluice.sidecar.port" -}}
{{- $l := .values.sluice.config.listeners | default list -}}
{{- if not $l -}}
{{- fail "sluice.config.listeners: the chart needs at least one listener (its port is the Service's target)" -}}
{{- end -}}
{{- include "sluice.sidecar.portOf" (dict "address" (first $l).address "what" "sluice.config.listeners[0].address") -}}
{{- end -}}

{{- /* The port of admin.metrics_address: /metrics, /healthz and /readyz
     only, for kubelet's probes and Prometheus on the pod IP; the full
     admin API (/reload, /config, /explain) stays on admin.address,
     loopback, reached with kubectl port-forward. */ -}}
{{- define "sluice.sidecar.adminPort" -}}
{{- $a := (.values.sluice.config.admin | default dict).metrics_address -}}
{{- if not $a -}}
{{- fail "sluice.config.admin.metrics_address: the chart needs the metrics listener (probes and Prometheus), e.g. \"0.0.0.0:9902\"" -}}
{{- end -}}
{{- if regexMatch "^(127\\.|localhost:|\\[::1\\]:)" (toString $a) -}}
{{- fail (printf "sluice.config.admin.metrics_address: '%s' is a loopback address, which kubelet's probes and Prometheus cannot reach; use 0.0.0.0:PORT" $a) -}}
{{- end -}}
{{- include "sluice.sidecar.portOf" (dict "address" $a "what" "sluice.config.admin.metrics_address") -}}
{{- end -}}

{{/* Render-time checks of the wiring between values and configuration. */}}
{{- define "sluice.sidecar.check" -}}
{{- $s := .values.sluice -}}
{{- $inc := toString ($s.config.include | default "") -}}
{{- if and $s.dropins (not (has $inc (list "../conf.d" "../conf.d/" "/etc/sluice/conf.d" "/etc/sluice/conf.d/"))) -}}
{{- fail (printf "sluice.dropins are mounted at /etc/sluice/conf.d, but sluice.config.include is '%s': set it to ../conf.d" $inc) -}}
{{- end -}}
{{- $_ := include "sluice.sidecar.terminationGracePeriodSeconds" . -}}
{{- $tls := $s.tls | default dict -}}
{{- range $l := $s.config.listeners | default list -}}
{{- $t := $l.tls | default dict -}}
{{- range $k := list "certificate" "private_key" -}}
{{- if and (hasPrefix "/etc/sluice/tls/" (toString (get $t $k))) (not $tls.secretName) -}}
{{- fail (printf "listener '%s': tls.%s is under /etc/sluice/tls/, but sluice.tls.secretName is empty: nothing is mounted there" $l.name $k) -}}
{{- end -}}
{{- end -}}
{{- if and (hasPrefix "/etc/sluice/tickets/" (toString $t.ticket_keys_file)) (not $tls.ticketKeysSecretName) -}}
{{- fail (printf "listener '%s': tls.ticket_keys_file is under /etc/sluice/tickets/, but sluice.tls.ticketKeysSecretName is empty: nothing is mounted there" $l.name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The sluice container; native adds restartPolicy: Always, classic a
     preStop sleep. */}}
{{- define "sluice.sidecar.container" -}}
{{- include "sluice.sidecar.check" . -}}
{{- $s := .values.sluice -}}
- name: sluice
  image: "{{ $s.image.repository }}:{{ $s.image.tag }}"
  imagePullPolicy: {{ $s.image.pullPolicy }}
  {{- if eq $s.sidecar "native" }}
  restartPolicy: Always
  {{- end }}
  args:
    - run
    - -c
    - /etc/sluice/config/sluice.yaml
    {{- range $s.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  ports:
    - { name: sluice-http, containerPort: {{ include "sluice.sidecar.port" . }}, protocol: TCP }
    - { name: sluice-admin, containerPort: {{ include "sluice.sidecar.adminPort" . }}, protocol: TCP }
  startupProbe:               # 200 once the configuration is loaded and listeners bound
    httpGet: { path: /readyz, port: sluice-admin }
    periodSeconds: {{ $s.startupProbe.periodSeconds }}
    failureThreshold: {{ $s.startupProbe.failureThreshold }}
  readinessProbe:             # 503 while draining
    httpGet: { path: /readyz, port: sluice-admin }
    periodSeconds: 5
    failureThreshold: 2
  livenessProbe:              # 200 while the process runs
    httpGet: { path: /healthz, port: sluice-admin }
    periodSeconds: 10
    failureThreshold: 3
  {{- if ne $s.sidecar "native" }}
  lifecycle:
    # Let endpoints drop the pod before SIGTERM closes the listener.
    preStop:
      exec: { command: ["/usr/local/bin/sluice", "sleep", "{{ $s.preStopSleepSeconds }}"] }
  {{- end }}
  resources:
    {{- toYaml $s.resources | nindent 4 }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 10001
    runAsGroup: 10001
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities: { drop: ["ALL"] }
    seccompProfile: { type: RuntimeDefault }
  volumeMounts:
    - { name: sluice-config, mountPath: /etc/sluice/config, readOnly: true }
    - { name: sluice-dropins, mountPath: /etc/sluice/conf.d, readOnly: true }
{{- with .values.sluice.tls }}
{{- if .secretName }}
    - { name: sluice-tls, mountPath: /etc/sluice/tls, readOnly: true }
{{- end }}
{{- if .ticketKeysSecretName }}
    - { name: sluice-tickets, mountPath: /etc/sluice/tickets, readOnly: true }
{{- end }}
{{- end }}
{{- if (.values.sluice.global | default dict).passwordSecretName }}
    - { name: sluice-redis, mountPath: /etc/sluice/redis, readOnly: true }
{{- end }}
{{- end -}}

{{- define "sluice.sidecar.initContainers" -}}
{{- if eq .values.sluice.sidecar "native" -}}
{{- include "sluice.sidecar.container" . -}}
{{- end -}}
{{- end -}}

{{- define "sluice.sidecar.containers" -}}
{{- if ne .values.sluice.sidecar "native" -}}
{{- include "sluice.sidecar.container" . -}}
{{- end -}}
{{- end -}}

{{- define "sluice.sidecar.volumes" -}}
- name: sluice-config
  configMap:
    name: {{ include "sluice.prefix" .top }}-config
- name: sluice-dropins
  configMap:
    name: {{ include "sluice.prefix" .top }}-dropins
    optional: true
{{- with .values.sluice.tls }}
{{- if .secretName }}
- name: sluice-tls
  secret:
    secretName: {{ .secretName }}
    items: [{ key: tls.crt, path: tls.crt }, { key: tls.key, path: tls.key }]
{{- end }}
{{- if .ticketKeysSecretName }}
- name: sluice-tickets
  secret:
    secretName: {{ .ticketKeysSecretName }}
    items: [{ key: ticket.keys, path: ticket.keys }]
{{- end }}
{{- end }}
{{- with (.values.sluice.global | default dict).passwordSecretName }}
- name: sluice-redis
  secret:
    secretName: {{ . }}
    items: [{ key: password, path: password }]
{{- end }}
{{- end -}}

{{- define "sluice.sidecar.podAnnotations" -}}
{{- $a := dict -}}
{{- if .values.metrics.podAnnotations -}}
{{- $_ := set $a "prometheus.io/scrape" "true" -}}
{{- $_ := set $a "prometheus.io/port" (include "sluice.sidecar.adminPort" .) -}}
{{- $_ := set $a "prometheus.io/path" "/metrics" -}}
{{- end -}}
{{- if .values.sluice.restartOnConfigChange -}}
{{- $_ := set $a "checksum/sluice-config" (toYaml .values.sluice.config | sha256sum) -}}
{{- end -}}
{{- if $a -}}
{{- toYaml $a -}}
{{- end -}}
{{- end -}}
