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

{{/*
"true" when the cluster has the container securityContext field appArmorProfile (Kubernetes
1.30 and later); older clusters take the annotation form instead, which 1.30 deprecated. The
"-0" lets pre-releases and provider builds (v1.30.2-eks-...) count as 1.30.
*/}}
{{- define "l2announcer.appArmorField" -}}
{{- if semverCompare ">=1.30-0" .Capabilities.KubeVersion.Version -}}
true
{{- end -}}
{{- end -}}

{{/*
The pod template's annotations: the chart's own, then podAnnotations, which win (for example
prometheus.io/scrape: "false" where a ServiceMonitor scrapes instead). Empty when there are none.
*/}}
{{- define "l2announcer.podAnnotations" -}}
{{- $annotations := dict -}}
{{- if .Values.prometheus.enabled -}}
{{- $_ := set $annotations "prometheus.io/scrape" "true" -}}
{{- $_ := set $annotations "prometheus.io/port" (toString .Values.prometheus.port) -}}
{{- end -}}
{{- if not (include "l2announcer.appArmorField" .) -}}
{{- $_ := set $annotations "container.apparmor.security.beta.kubernetes.io/l2announcer" "unconfined" -}}
{{- end -}}
{{- $annotations = mergeOverwrite $annotations (.Values.podAnnotations | default dict) -}}
{{- if $annotations -}}
{{- toYaml $annotations -}}
{{- end -}}
{{- end -}}

{{/*
podLabels may not replace the labels the DaemonSet selects its pods by: a pod template that does
not match the selector is refused, and a changed selector cannot be applied to an existing
DaemonSet.
*/}}
{{- define "l2announcer.podLabels" -}}
{{- range $key := list "app.kubernetes.io/name" "app.kubernetes.io/part-of" -}}
{{- if hasKey ($.Values.podLabels | default dict) $key -}}
{{- fail (printf "podLabels may not set %s: the DaemonSet selects its pods by the chart's own value" $key) -}}
{{- end -}}
{{- end -}}
{{- with .Values.podLabels -}}
{{- toYaml . -}}
{{- end -}}
{{- end -}}

{{/*
extraEnv may not name a variable the chart sets: the later definition would silently hide the
chart's, which the agent's mounts and configuration depend on.
*/}}
{{- define "l2announcer.extraEnv" -}}
{{- $ours := list "NODE_NAME" "L2ANNOUNCER_K8S_NAMESPACE" "L2ANNOUNCER_CONFIG_DIR" "L2ANNOUNCER_STATE_DIR" "L2ANNOUNCER_BPF_ROOT" "L2ANNOUNCER_AGENT_HEALTH_PORT" "DAEMONSET_NAME" -}}
{{- if .Values.k8sServiceHost -}}
{{- $ours = append $ours "KUBERNETES_SERVICE_HOST" -}}
{{- end -}}
{{- if .Values.k8sServicePort -}}
{{- $ours = append $ours "KUBERNETES_SERVICE_PORT" -}}
{{- end -}}
{{- range .Values.extraEnv -}}
{{- if has .name $ours -}}
{{- fail (printf "extraEnv may not set %s: the chart sets it (see docs/deploy.md, Values)" .name) -}}
{{- end -}}
{{- end -}}
{{- with .Values.extraEnv -}}
{{- toYaml . -}}
{{- end -}}
{{- end -}}

{{/*
The ServiceMonitor's preconditions, checked before anything is rendered for it: it scrapes the
agent's metrics port, so metrics must be served; and a cluster without the Prometheus Operator's
CRD would refuse the object at install, after the rest of the release was applied.
*/}}
{{- define "l2announcer.checkServiceMonitor" -}}
{{- if not .Values.prometheus.enabled -}}
{{- fail "prometheus.serviceMonitor.enabled needs prometheus.enabled=true: the ServiceMonitor scrapes the agent's metrics port" -}}
{{- end -}}
{{- if not (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor") -}}
{{- fail "prometheus.serviceMonitor.enabled: the cluster does not serve monitoring.coreos.com/v1 ServiceMonitor; install the Prometheus Operator's CRDs first (with helm template, pass --api-versions monitoring.coreos.com/v1/ServiceMonitor)" -}}
{{- end -}}
{{- end -}}
