#!/usr/bin/env bash
# Installs the Debian packages Parley needs to build and test, when they are missing.
# Usage: scripts/deps.sh [build|test|bench]   (default: test, which includes build)
# As root it runs apt-get; otherwise it prints the exact command to run.
set -euo pipefail

what=${1:-test}
build_pkgs=(make gcc pkg-config libevent-dev libsqlite3-dev libsodium-dev libreadline-dev libssl-dev
            libhiredis-dev linux-libc-dev) # linux-libc-dev: <linux/io_uring.h> (net_uring.c)
test_pkgs=(libcmocka-dev python3-pytest python3-pexpect python3-pytest-timeout python3-cryptography clang
           libclang-rt-14-dev iproute2 redis-server openssl python3-prometheus-client)
bench_pkgs=(mosquitto)
# Not here: systemd (systemd-analyze for `make lint`), the init system, not a light install;
# the lint step skips the unit with a note where it is missing.

pkgs=("${build_pkgs[@]}")
case "$what" in
  build) ;;
  test) pkgs+=("${test_pkgs[@]}") ;;
  bench) pkgs+=("${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
  *) echo "usage: $0 [build|test|bench]" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "Parley needs these Debian packages: ${missing[*]}" >&2
  echo "Run: sudo apt-get update && sudo $cmd" >&2
  exit 1
fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
# shellcheck disable=SC2086
$cmd >&2
