//go:build tools

// Package tools makes Consul's main package a dependency of this wrapper module, so that
// `go build github.com/hashicorp/consul` builds the pinned release (scripts/setup.sh).
package tools

import _ "github.com/hashicorp/consul"
