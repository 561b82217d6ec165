//go:build tools

// Package tools keeps the command this module builds in go.mod.
package tools

import _ "helm.sh/helm/v4/cmd/helm"
