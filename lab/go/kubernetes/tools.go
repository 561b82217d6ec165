//go:build tools

// Package tools keeps the commands this module builds in go.mod (go mod tidy drops what no file
// imports).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
