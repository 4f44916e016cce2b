#!/usr/bin/env bash
# Generates the Go stubs the contract harness (test/contract) calls the plugin and fakes the sidecar with,
# from the project's own .proto files: Nomad's driver protocol and chain.v1's sidecar API. Output goes to
# test/contract/gen/ (gitignored). protoc-gen-go and protoc-gen-go-grpc are installed with `go install` into
# a cache directory, pinned. go-plugin's internal services and grpc.health.v1 are not generated: go-plugin
# registers its own copies of them, and its client calls them itself (health, broker, stdio, controller).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${NOMAD_CHAIN_CACHE:-/var/cache/nomad-chain}
BIN="$CACHE/go-bin"
PROTOC_GEN_GO=google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC=google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
MODULE=nomad-chain/contract

command -v protoc >/dev/null || { echo "gen-go-proto: protoc not found (run npm run setup)" >&2; exit 1; }
command -v go >/dev/null || { echo "gen-go-proto: go not found" >&2; exit 1; }
mkdir -p "$BIN"
for tool in "$PROTOC_GEN_GO" "$PROTOC_GEN_GO_GRPC"; do
  name=$(basename "${tool%@*}")
  stamp="$BIN/.$name.version"
  if [ ! -x "$BIN/$name" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$tool" ]; then
    GOBIN="$BIN" go install "$tool" || { echo "gen-go-proto: go install $tool failed" >&2; exit 1; }
    echo "$tool" >"$stamp"
  fi
done

cd "$ROOT/proto"
# proto path → Go package (import path;name); the .proto files carry no Go options of their own.
declare -A PACKAGES=(
  [nomad/plugins/shared/hclspec/hcl_spec.proto]=gen/nomad/hclspec
  [nomad/plugins/shared/structs/proto/attribute.proto]=gen/nomad/structs
  [nomad/plugins/shared/structs/proto/recoverable_error.proto]=gen/nomad/structs
  [nomad/plugins/base/proto/base.proto]=gen/nomad/base
  [nomad/plugins/drivers/proto/driver.proto]=gen/nomad/drivers
  [chain/v1/sidecar.proto]=gen/chain/sidecar
)
maps=()
for file in "${!PACKAGES[@]}"; do
  dir=${PACKAGES[$file]}
  maps+=("M$file=$MODULE/$dir;$(basename "$dir")")
done
go_opts=$(IFS=,; echo "${maps[*]}")
out="$ROOT/test/contract"
rm -rf "$out/gen"
mapfile -t files < <(printf '%s\n' "${!PACKAGES[@]}" | LC_ALL=C sort)
protoc -I . -I /usr/include \
  --plugin=protoc-gen-go="$BIN/protoc-gen-go" --plugin=protoc-gen-go-grpc="$BIN/protoc-gen-go-grpc" \
  --go_out="$out" --go_opt="module=$MODULE,$go_opts" \
  --go-grpc_out="$out" --go-grpc_opt="module=$MODULE,$go_opts" \
  "${files[@]}"
echo "Go stubs generated in test/contract/gen"
