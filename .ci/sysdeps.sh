#!/usr/bin/env bash
# Debian packages the product and its tests need; installs only what is missing.
set -euo pipefail
need=()
for pkg in dataset-fashion-mnist chromium; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages: ${need[*]} - run: sudo apt-get update && sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
