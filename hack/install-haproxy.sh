#!/usr/bin/env bash
# HAProxy for the router tests and benches: Debian's package (2.6 on bookworm), the same
# configuration language as the router image's 2.8. Needs root (or sudo) and apt-get.
set -euo pipefail
if command -v haproxy >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends haproxy >/dev/null
haproxy -v | head -1
