{{/*
devices as the agent reads it: names separated by spaces. The value may be a list (as in the
reference's chart) or a string.
*/}}
{{- define "l2announcer.devices" -}}
{{- if kindIs "slice" .Values.devices -}}
{{- join " " .Values.devices -}}
{{- else -}}
{{- .Values.devices | default "" | toString -}}
{{- end -}}
{{- end -}}

{{/*
prometheus-serve-addr: ":<port>" when metrics are enabled, empty (off) otherwise. A port outside
1-65535 fails the render instead of an agent that exits on every node.
*/}}
{{- define "l2announcer.prometheusServeAddr" -}}
{{- if .Values.prometheus.enabled -}}
{{- $port := int .Values.prometheus.port -}}
{{- if or (lt $port 1) (gt $port 65535) -}}
{{- fail (printf "prometheus.port must be a port number between 1 and 65535, got %v" .Values.prometheus.port) -}}
{{- end -}}
:{{ $port }}
{{- end -}}
{{- end -}}
