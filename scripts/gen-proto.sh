#!/usr/bin/env bash
# Generates proto/gen/ from proto/**/*.proto with protoc and ts-proto (messages on protobufjs' wire codec,
# services as @grpc/grpc-js definitions). `--check` regenerates into a temporary folder and fails if the
# committed proto/gen/ differs: generated code is never edited by hand.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
command -v protoc >/dev/null || { echo "gen-proto: protoc not found (run npm run setup)" >&2; exit 1; }
[ -x node_modules/.bin/protoc-gen-ts_proto ] || { echo "gen-proto: ts-proto not installed (run npm run setup)" >&2; exit 1; }

out=proto/gen
if [ "${1:-}" = "--check" ]; then out=$(mktemp -d); trap 'rm -rf "$out"' EXIT; fi
mapfile -t files < <(find proto -name '*.proto' -not -path 'proto/gen/*' | LC_ALL=C sort)
[ ${#files[@]} -gt 0 ] || { echo "gen-proto: no .proto files under proto/" >&2; exit 1; }

[ "${1:-}" = "--check" ] || { rm -rf "$out"; mkdir -p "$out"; }
protoc --plugin=protoc-gen-ts_proto=node_modules/.bin/protoc-gen-ts_proto \
  -I proto -I /usr/include \
  --ts_proto_out="$out" \
  --ts_proto_opt=outputServices=grpc-js,env=node,esModuleInterop=true,forceLong=number,oneof=unions,useDate=false \
  "${files[@]}"

if [ "${1:-}" = "--check" ]; then
  diff -r proto/gen "$out" >/dev/null || { echo "gen-proto: proto/gen is stale; run npm run proto:gen" >&2; diff -r proto/gen "$out" | head -20 >&2; exit 1; }
  echo "proto/gen is up to date"
fi
