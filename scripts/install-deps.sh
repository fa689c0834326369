#!/usr/bin/env bash
# Installs every Debian package Conclave needs to build, test, benchmark and
# compare itself against etcd. Idempotent: it asks apt only for what is
# missing, and runs `apt-get update` only when something is.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential g++ cmake make ccache pkg-config git
  clang clang-format clang-tidy libclang-rt-14-dev
  # libraries linked into Conclave
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  librocksdb-dev libspdlog-dev libfmt-dev libcli11-dev prometheus-cpp-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  # compatibility and comparison (never linked)
  etcd-server etcd-client python3 python3-etcd3
  # fault injection and cluster tests
  iproute2 iptables procps psmisc
)
# make test-web: a real browser for the web page's test.
if [ "${1:-}" = "--web" ]; then
  PACKAGES+=(chromium)
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
