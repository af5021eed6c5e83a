#!/usr/bin/env bash
# Prometheus and promtool for the alert-rule tests and the observability integration test:
# Debian's package (2.42 on bookworm). Its service does not start in containers: the tests run
# `prometheus` themselves on loopback. Needs root (or sudo) and apt-get.
set -euo pipefail
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
prometheus --version 2>&1 | head -1
