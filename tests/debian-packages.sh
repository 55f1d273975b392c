#!/usr/bin/env bash
# make test: install the Debian programs the tests drive, when missing: PROGRAM:PACKAGE pairs.
# Needs root and apt-get; otherwise it says what to install and the tests that need a missing
# program are skipped (or fail, with CI=true). Services the packages bring are never started here
# (policy-rc.d refuses): each test starts its own program on its own port.
set -euo pipefail

missing=()
for pair in "$@"; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "test: missing ${missing[*]}; their tests are skipped (sudo apt-get install ${missing[*]})"
  exit 0
fi

echo "test: installing Debian's ${missing[*]}"
policy=/usr/sbin/policy-rc.d
placed=false
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && placed=true
fi
trap '[ "$placed" = true ] && rm -f "$policy"' EXIT
install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }
install "${missing[@]}" || { apt-get update -qq && install "${missing[@]}"; }
