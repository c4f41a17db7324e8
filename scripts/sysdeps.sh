#!/usr/bin/env bash
# Installs the system packages the project needs when they are missing: redis, nginx, chromium,
# promtool (package prometheus), systemd-analyze (package systemd), pgbouncer, redis-sentinel,
# iproute2 and openssl (scale-out tests).
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)  # promtool checks /metrics
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)  # verifies systemd/ units
[ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null 2>&1 || need+=(pgbouncer)  # scale-out
command -v redis-sentinel >/dev/null 2>&1 || need+=(redis-sentinel)  # Sentinel failover tests
command -v ip >/dev/null 2>&1 || need+=(iproute2)  # network namespaces as hosts
command -v openssl >/dev/null 2>&1 || need+=(openssl)  # test certificates
if [ "${QUIZAPP_SKIP_BROWSER:-0}" != 1 ]; then
  [ -x /usr/bin/chromium ] || need+=(chromium)
fi
[ "${#need[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${need[*]} (install them with apt-get as root)" >&2
  exit 1
fi
echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts the packaged services; this project runs its own under var/.
for svc in redis-server redis-sentinel nginx prometheus pgbouncer; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" || true
  fi
done
