//go:build tools

// Package tools makes Nomad's main package a dependency of this wrapper module, so that
// `go build github.com/hashicorp/nomad` builds the pinned release (scripts/setup.sh).
package tools

import _ "github.com/hashicorp/nomad"
