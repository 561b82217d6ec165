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
