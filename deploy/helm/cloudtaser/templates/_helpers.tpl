{{/*
Names are fixed, not derived from the release name: wrappers are configured
with broker://cloudtaser-broker.<namespace>.svc:8443, so the Service must be
called cloudtaser-broker whatever the release is called.
*/}}
{{- define "cloudtaser.broker.name" -}}cloudtaser-broker{{- end -}}
{{- define "cloudtaser.broker.bridgeServiceName" -}}cloudtaser-broker-bridge{{- end -}}

{{- define "cloudtaser.chart" -}}
{{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{- define "cloudtaser.commonLabels" -}}
helm.sh/chart: {{ include "cloudtaser.chart" . }}
app.kubernetes.io/part-of: cloudtaser
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "cloudtaser.labels" -}}
{{ include "cloudtaser.commonLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cloudtaser.broker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cloudtaser.broker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cloudtaser.broker.labels" -}}
{{ include "cloudtaser.commonLabels" . }}
{{ include "cloudtaser.broker.selectorLabels" . }}
app.kubernetes.io/component: broker
{{- end -}}

{{- define "cloudtaser.broker.image" -}}
{{- $img := .Values.broker.image -}}
{{- if $img.digest -}}
{{ $img.repository }}@{{ $img.digest }}
{{- else -}}
{{ $img.repository }}:{{ $img.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/*
Fails the render on settings that would install cleanly but never work.
Included by every broker template so `helm template` reports it too.
*/}}
{{- define "cloudtaser.broker.validate" -}}
{{- $b := .Values.broker -}}
{{- $host := required "broker.externalHost is required when broker.enabled=true: the DNS name vault-bridge dials (--broker-address <host>:443)" $b.externalHost -}}
{{- if and $b.tls.create (or (not $b.tls.crt) (not $b.tls.key) (not $b.tls.ca)) -}}
{{- fail "broker.tls.create=true needs broker.tls.crt, broker.tls.key and broker.tls.ca (use --set-file with the files cloudtaser-certs wrote)" -}}
{{- end -}}
{{- if and $b.insecureNoPin $b.bridgePins -}}
{{- fail "broker.insecureNoPin=true contradicts broker.bridgePins: drop one" -}}
{{- end -}}
{{- if and $b.tls.create (not $b.bridgePins) (not $b.insecureNoPin) -}}
{{- fail "broker.tls.create=true needs broker.bridgePins (cloudtaser-certs prints the bridge pin): the broker refuses to start without a pin" -}}
{{- end -}}
{{- $addr := .Values.operator.secretstore.address -}}
{{- if hasPrefix "broker://" $addr -}}
{{- $want := printf "broker://%s.%s.svc:%v" (include "cloudtaser.broker.name" .) .Release.Namespace $b.ports.service -}}
{{- $wantLong := printf "broker://%s.%s.svc.cluster.local:%v" (include "cloudtaser.broker.name" .) .Release.Namespace $b.ports.service -}}
{{- if and (ne $addr $want) (ne $addr $wantLong) -}}
{{- fail (printf "operator.secretstore.address is %s but this release serves the broker at %s (check --namespace)" $addr $want) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* ADDR:PORT for a numeric listen address, bracketing IPv6. */}}
{{- define "cloudtaser.broker.listen" -}}
{{- $addr := index . 0 -}}
{{- $port := index . 1 -}}
{{- if contains ":" $addr -}}[{{ $addr }}]:{{ $port }}{{- else -}}{{ $addr }}:{{ $port }}{{- end -}}
{{- end -}}
