#!/usr/bin/env bash
# Installs everything nomad-chain needs on a fresh Debian 12 machine. Idempotent: a second run finds each
# component already in place (or in the machine-wide cache) and takes seconds.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${NOMAD_CHAIN_CACHE:-/var/cache/nomad-chain}
CRIU_VERSION=4.2.1
CRIU_TARBALL=criu_${CRIU_VERSION}.orig.tar.xz
CRIU_PREFIX=${CRIU_PREFIX:-/usr/local}
CRIU_MIN=4.2
# chromium-headless-shell: the real browser the integration tier drives local mode's web view with.
APT_PACKAGES=(runc iptables haproxy iproute2 python3-venv xz-utils protobuf-compiler libprotobuf-dev redis-server
  apache2 mariadb-server sqlite3 util-linux acl chromium-headless-shell)
CRIU_BUILD_DEPS=(build-essential pkgconf libbsd-dev libcap-dev libgnutls28-dev libnet1-dev libnftables-dev
  libnl-3-dev libprotobuf-c-dev libprotobuf-dev uuid-dev protobuf-c-compiler protobuf-compiler
  python3-protobuf dpkg-dev)

step() { printf '==> %s\n' "$*"; }
ok() { printf '    %-22s %s\n' "$1" "$2"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs Debian packages and CRIU)"
mkdir -p "$CACHE"

apt_updated=0
apt_install() {
  local missing=()
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ $apt_updated = 0 ]; then apt-get update -qq || die "apt-get update failed"; apt_updated=1; fi
  # Servers the tests run inside tasks (apache2, mariadb-server, redis-server) must not also start on the
  # host: a policy-rc.d that exits 101 tells their postinst not to, unless the machine already has one.
  local policy=/usr/sbin/policy-rc.d own_policy=0
  if [ ! -e $policy ]; then printf '#!/bin/sh\nexit 101\n' >$policy && chmod 0755 $policy && own_policy=1; fi
  # --no-install-recommends: runc recommends Debian's criu 3.17, which fails on this kernel.
  local rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
  [ $own_policy = 0 ] || rm -f $policy
  [ $rc = 0 ] || die "apt-get install failed for: ${missing[*]}"
}

version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }

criu_usable() {
  local bin=$1 v
  [ -x "$bin" ] || return 1
  v=$("$bin" --version 2>/dev/null | sed -n 's/^Version: *//p')
  [ -n "$v" ] && version_ge "$v" "$CRIU_MIN" && "$bin" check >/dev/null 2>&1
}

fetch_criu_tarball() {
  [ -f "$CACHE/$CRIU_TARBALL" ] && return 0
  # A private apt configuration with one sid deb-src entry: apt verifies the tarball against the sha256 in
  # Debian's signed Sources index, and the machine's own apt sources stay untouched.
  local aptdir="$CACHE/apt-sid"
  mkdir -p "$aptdir/lists/partial" "$aptdir/archives/partial" "$aptdir/src"
  cat >"$aptdir/sid.sources" <<EOF
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  local opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$aptdir" -o "Dir::State::Lists=$aptdir/lists"
    -o "Dir::Cache::Archives=$aptdir/archives" -o "Debug::NoLocking=1")
  apt-get "${opts[@]}" update -qq >/dev/null || die "could not read Debian sid's Sources index"
  # The .debian part of the source package may 404; the orig tarball alone is what we build.
  (cd "$aptdir/src" && apt-get "${opts[@]}" source --download-only criu >/dev/null 2>&1) || true
  [ -f "$aptdir/src/$CRIU_TARBALL" ] || die "could not download $CRIU_TARBALL from Debian sid"
  local want
  want=$(apt-cache "${opts[@]}" showsrc criu 2>/dev/null \
    | awk '/^Checksums-Sha256:/{f=1;next} f&&/^ /{print} f&&!/^ /{f=0}' | awk -v t="$CRIU_TARBALL" '$3==t{print $1}' | head -n1)
  [ -n "$want" ] || die "no sha256 for $CRIU_TARBALL in Debian's Sources index"
  echo "$want  $aptdir/src/$CRIU_TARBALL" | sha256sum -c --quiet - || die "$CRIU_TARBALL does not match Debian's sha256"
  cp "$aptdir/src/$CRIU_TARBALL" "$CACHE/$CRIU_TARBALL"
}

install_criu() {
  local existing
  for existing in "${CRIU_BIN:-}" "$CRIU_PREFIX/sbin/criu" "$(command -v criu 2>/dev/null || true)"; do
    if [ -n "$existing" ] && criu_usable "$existing"; then echo "$existing"; return 0; fi
  done
  apt_install "${CRIU_BUILD_DEPS[@]}"
  fetch_criu_tarball
  local build="$CACHE/build/criu-$CRIU_VERSION"
  if [ ! -x "$build/criu/criu" ]; then
    rm -rf "$build" && mkdir -p "$CACHE/build"
    tar -xJf "$CACHE/$CRIU_TARBALL" -C "$CACHE/build" || die "could not unpack $CRIU_TARBALL"
    make -C "$build" -j"$(nproc)" criu >"$CACHE/build/criu-make.log" 2>&1 \
      || die "CRIU build failed; see $CACHE/build/criu-make.log"
  fi
  install -D -m 0755 "$build/criu/criu" "$CRIU_PREFIX/sbin/criu"
  criu_usable "$CRIU_PREFIX/sbin/criu" || die "built CRIU at $CRIU_PREFIX/sbin/criu fails 'criu check'"
  echo "$CRIU_PREFIX/sbin/criu"
}

step "Debian packages"
apt_install "${APT_PACKAGES[@]}"
ok runc "$(runc --version | head -n1)"
ok haproxy "$(haproxy -v | head -n1)"
ok iptables "$(iptables --version)"
ok iproute2 "$(ip -V)"

step "CRIU >= $CRIU_MIN"
criu_bin=$(install_criu)
ok criu "$criu_bin ($("$criu_bin" --version | sed -n 's/^Version: *//p'))"
# Without CAP_SYS_RESOURCE, CRIU's 64 KiB tee pipes break the lazy-pages page server.
if [ "$(cat /proc/sys/fs/pipe-max-size)" -lt 4194304 ]; then sysctl -q -w fs.pipe-max-size=4194304; fi
ok fs.pipe-max-size "$(cat /proc/sys/fs/pipe-max-size)"

step "npm dependencies"
cd "$ROOT"
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -f node_modules/.setup-lock-hash ] && [ "$(cat node_modules/.setup-lock-hash)" = "$lock_hash" ]; then
  ok node_modules "up to date"
else
  ONNXRUNTIME_NODE_INSTALL=skip ONNXRUNTIME_NODE_INSTALL_CUDA=skip npm ci --no-audit --no-fund --loglevel=error \
    || die "npm ci failed"
  echo "$lock_hash" >node_modules/.setup-lock-hash
  ok node_modules "installed"
fi
node -e "require('onnxruntime-node')" || die "onnxruntime-node does not load"
ok onnxruntime-node "$(node -p "require('onnxruntime-node/package.json').version")"

step "Python training environment (.venv)"
req="$ROOT/forecaster/training/requirements.txt"
if [ -f "$req" ]; then
  req_hash=$( (sha256sum "$req"; sha256sum "$ROOT/forecaster/training/pyproject.toml" 2>/dev/null) | sha256sum | cut -d' ' -f1)
  if [ ! -f .venv/.setup-hash ] || [ "$(cat .venv/.setup-hash)" != "$req_hash" ]; then
    python3 -m venv .venv || die "python3 -m venv failed"
    .venv/bin/pip install -q --cache-dir "$CACHE/pip" -r "$req" || die "pip install of $req failed"
    .venv/bin/pip install -q --no-deps -e "$ROOT/forecaster/training" || die "pip install of the trainer failed"
    echo "$req_hash" >.venv/.setup-hash
  fi
  ok python "$(.venv/bin/python --version)"
  pkgs=$(.venv/bin/python -c 'import importlib.metadata as m; print(" ".join(f"{p}=={m.version(p)}" for p in ("lightgbm", "scikit-learn", "onnx", "onnxmltools", "skl2onnx", "onnxruntime", "prophet", "matplotlib")))') \
    || die "the training environment is incomplete; delete .venv and run npm run setup again"
  ok python-packages "$pkgs"
fi

step "Go modules of the contract harness"
if [ -f "$ROOT/test/contract/go.mod" ]; then
  (cd "$ROOT/test/contract" && go mod download) || die "go mod download failed in test/contract"
  ok go "$(go version | cut -d' ' -f3)"
  bash "$ROOT/scripts/gen-go-proto.sh" >/dev/null || die "Go stub generation failed (scripts/gen-go-proto.sh)"
  ok go-stubs "test/contract/gen"
fi

step "Nomad and Consul (the real-Nomad tier)"
# Their last MPL-2.0 releases, built from the Go module proxy as the main packages of the pinned wrapper
# modules in scripts/hashicorp-build/ (their go.sum is committed, so every module is checked against it and
# the checksum database is never asked). Cached by version and wrapper hash: a warm set-up takes seconds.
NOMAD_VERSION=1.6.3
CONSUL_VERSION=1.16.1
command -v go >/dev/null || die "go is needed to build Nomad and Consul (install Go >= 1.21)"
build_hashicorp() {
  local name=$1 version=$2 wrapper="$ROOT/scripts/hashicorp-build/$1" bin="$CACHE/bin/$1-$2" stamp want
  want=$(cat "$wrapper/go.mod" "$wrapper/go.sum" "$wrapper/tools.go" | sha256sum | cut -d' ' -f1)
  stamp="$bin.wrapper-sha256"
  if [ ! -x "$bin" ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    mkdir -p "$CACHE/bin"
    local log="$CACHE/bin/$name-$version.build.log" started=$SECONDS
    (cd "$wrapper" && GOFLAGS="-mod=readonly -buildvcs=false" go build -o "$bin.tmp" "github.com/hashicorp/$name") >"$log" 2>&1 \
      || die "building $name $version failed; see $log"
    mv -f "$bin.tmp" "$bin"
    echo "$want" >"$stamp"
    ok "$name build" "$((SECONDS - started)) s"
  fi
  # Read whole, not through head: under pipefail a binary killed by SIGPIPE after head's first line fails the check.
  local reported
  reported=$("$bin" version) || die "$bin version failed"
  [[ "${reported%%$'\n'*}" == *"v$version" ]] || die "$bin does not report v$version (it says: ${reported%%$'\n'*})"
}
build_hashicorp nomad "$NOMAD_VERSION"
ok nomad "$("$CACHE/bin/nomad-$NOMAD_VERSION" version | head -n1) ($CACHE/bin/nomad-$NOMAD_VERSION)"
build_hashicorp consul "$CONSUL_VERSION"
ok consul "$("$CACHE/bin/consul-$CONSUL_VERSION" version | head -n1) ($CACHE/bin/consul-$CONSUL_VERSION)"

step "done"
