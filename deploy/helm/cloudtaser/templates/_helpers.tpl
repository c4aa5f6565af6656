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
{{- $beacons := include "cloudtaser.broker.beacons" . | fromYamlArray -}}
{{- if not $beacons -}}
{{- $host := required "broker.externalHost is required when broker.enabled=true: the DNS name vault-bridge dials (--broker-address <host>:443); or set broker.beacon.address for beacon relay mode" $b.externalHost -}}
{{- else -}}
{{- if gt (len $beacons) 8 -}}
{{- fail (printf "broker.beacon.address lists %d beacons; the broker takes at most 8" (len $beacons)) -}}
{{- end -}}
{{- if not (eq (len $beacons) (len (uniq $beacons))) -}}
{{- fail "broker.beacon.address lists a beacon twice" -}}
{{- end -}}
{{- range $beacons -}}
{{- if not (regexMatch "^(\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$" .) -}}
{{- fail (printf "broker.beacon.address entry %q is not HOST or HOST:PORT (an IPv6 address as [ADDR]:PORT)" .) -}}
{{- end -}}
{{- end -}}
{{- if and $b.tls.create (not $b.tls.pairingKey) -}}
{{- fail "broker.tls.create=true in beacon mode needs broker.tls.pairingKey (--set-file broker.tls.pairingKey=<out>/broker/pairing.key)" -}}
{{- end -}}
{{- end -}}
{{- $cm := $b.tls.certManager | default dict -}}
{{- if $cm.issuerRef -}}
{{- if not $cm.issuerRef.name -}}
{{- fail "broker.tls.certManager.issuerRef needs a name (the cert-manager Issuer or ClusterIssuer)" -}}
{{- end -}}
{{- if $b.tls.create -}}
{{- fail "broker.tls.certManager.issuerRef and broker.tls.create=true both make the Secret: drop one" -}}
{{- end -}}
{{- if and (not $b.bridgePins) (not $b.insecureNoPin) -}}
{{- fail "broker.tls.certManager needs broker.bridgePins: the Secret cert-manager writes holds no bridge.pin, and the broker refuses to start without a pin" -}}
{{- end -}}
{{- end -}}
{{- if and $b.tls.create (or (not $b.tls.crt) (not $b.tls.key) (not $b.tls.ca)) -}}
{{- fail "broker.tls.create=true needs broker.tls.crt, broker.tls.key and broker.tls.ca (use --set-file with the files cloudtaser-certs wrote)" -}}
{{- end -}}
{{- if and $b.insecureNoPin $b.bridgePins -}}
{{- fail "broker.insecureNoPin=true contradicts broker.bridgePins: drop one" -}}
{{- end -}}
{{- if and $b.tls.create (not $b.bridgePins) (not $b.insecureNoPin) -}}
{{- fail "broker.tls.create=true needs broker.bridgePins (cloudtaser-certs prints the bridge pin): the broker refuses to start without a pin" -}}
{{- end -}}
{{- $us := $b.updateStrategy | default dict -}}
{{- if and (eq (toString (default 0 $us.maxSurge)) "0") (eq (toString (default 0 $us.maxUnavailable)) "0") -}}
{{- fail "broker.updateStrategy.maxSurge and maxUnavailable are both 0: a rollout could replace no pod (keep maxSurge: 1)" -}}
{{- end -}}
{{- $limit := dig "limits" "memory" "" ($b.resources | default dict) -}}
{{- if $limit -}}
{{- $have := include "cloudtaser.memoryMiB" $limit -}}
{{- if not $have -}}
{{- fail (printf "broker.resources.limits.memory %v is not a quantity this chart reads: give it as e.g. 128Mi or 1Gi" $limit) -}}
{{- end -}}
{{- $need := add (mul 2 (int $b.memoryBudget)) 40 -}}
{{- if lt (float64 $have) (float64 $need) -}}
{{- fail (printf "broker.resources.limits.memory %v is below what broker.memoryBudget=%v needs: at least %vMi (the TLS and the forwarding process may each hold the budget, and the processes themselves take about 40 MiB); raise the limit or lower the budget" $limit $b.memoryBudget $need) -}}
{{- end -}}
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

{{/*
A Kubernetes memory quantity (128Mi, 1Gi, 500M, 134217728) in MiB, or ""
when it is not one of those forms (exponents and milli are not read).
*/}}
{{- define "cloudtaser.memoryMiB" -}}
{{- $q := . -}}
{{- if or (kindIs "float64" $q) (kindIs "int" $q) (kindIs "int64" $q) -}}
{{- divf $q 1048576 -}}
{{- else -}}
{{- $s := toString $q -}}
{{- if regexMatch "^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$" $s -}}
{{- $n := regexFind "^[0-9]+(\\.[0-9]+)?" $s -}}
{{- $unit := trimPrefix $n $s -}}
{{- $perMiB := dict "" 1048576.0 "Ki" 1024.0 "Mi" 1.0 "k" 1048.576 "M" 1.048576 -}}
{{- $inMiB := dict "Gi" 1024.0 "Ti" 1048576.0 "Pi" 1073741824.0 "Ei" 1099511627776.0 "G" 953.67431640625 "T" 953674.31640625 "P" 953674316.40625 "E" 953674316406.25 -}}
{{- if hasKey $perMiB $unit -}}
{{- divf (float64 $n) (get $perMiB $unit) -}}
{{- else -}}
{{- mulf (float64 $n) (get $inMiB $unit) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* ADDR:PORT for a numeric listen address, bracketing IPv6. */}}
{{- define "cloudtaser.broker.listen" -}}
{{- $addr := index . 0 -}}
{{- $port := index . 1 -}}
{{- if contains ":" $addr -}}[{{ $addr }}]:{{ $port }}{{- else -}}{{ $addr }}:{{ $port }}{{- end -}}
{{- end -}}

{{/*
broker.beacon.address as a YAML list of strings (one string is a list of
one; empty entries dropped). Empty list: reverse-connect mode.
*/}}
{{- define "cloudtaser.broker.beacons" -}}
{{- $a := .Values.broker.beacon.address | default list -}}
{{- if kindIs "string" $a -}}{{- $a = list $a -}}{{- end -}}
{{- $out := list -}}
{{- range $a -}}{{- if . -}}{{- $out = append $out (toString .) -}}{{- end -}}{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* The beacons' TCP ports (443 unless an address names one), once each. */}}
{{- define "cloudtaser.broker.beaconPorts" -}}
{{- $ports := list -}}
{{- range (include "cloudtaser.broker.beacons" . | fromYamlArray) -}}
{{- $p := 443 -}}
{{- $m := regexFind ":[0-9]+$" . -}}
{{- if and $m (or (not (contains "[" .)) (contains "]:" .)) -}}{{- $p = int (trimPrefix ":" $m) -}}{{- end -}}
{{- $ports = append $ports $p -}}
{{- end -}}
{{- toYaml (uniq $ports) -}}
{{- end -}}

{{- define "cloudtaser.beacon.name" -}}cloudtaser-beacon{{- end -}}

{{- define "cloudtaser.beacon.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cloudtaser.beacon.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cloudtaser.beacon.labels" -}}
{{ include "cloudtaser.commonLabels" . }}
{{ include "cloudtaser.beacon.selectorLabels" . }}
app.kubernetes.io/component: beacon
{{- end -}}

{{- define "cloudtaser.beacon.image" -}}
{{- $img := .Values.beacon.image -}}
{{- if $img.digest -}}
{{ $img.repository }}@{{ $img.digest }}
{{- else -}}
{{ $img.repository }}:{{ $img.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}
