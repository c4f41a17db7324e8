#!/usr/bin/env bash
# App "hosts" on one machine: N network namespaces, each joined to this machine by a veth pair with
# its own address, plus a shared-services address on this machine's loopback interface (PgBouncer,
# Redis and Sentinels bind there, so every host reaches them as it would a separate box).
# Usage: scripts/hosts.sh up NAME [COUNT] | down NAME
#   NAME: at most 9 characters, unique per worktree and run (interface names stay within 15).
#   up prints one line per host, "host<i> <namespace> <address> <gateway>", then "services <address>".
# Addresses come from 198.18.0.0/15 (RFC 2544 benchmarking range): never routed beyond this machine.
set -euo pipefail
action="${1:-}"
name="${2:-}"
count="${3:-2}"
[ -n "$name" ] && [ "${#name}" -le 9 ] || { echo "usage: $0 up|down NAME(<=9 chars) [COUNT]" >&2; exit 2; }
octet=$(( $(printf '%s' "$name" | cksum | cut -d' ' -f1) % 250 + 2 ))
net="198.18.$octet"

up() {
  ip addr add "$net.254/32" dev lo label "lo:${name}"
  for i in $(seq 1 "$count"); do
    local ns="${name}-h$i" outer="${name}h${i}o" inner="${name}h${i}i" base=$(( (i - 1) * 4 ))
    ip netns add "$ns"
    ip link add "$outer" type veth peer name "$inner"
    ip link set "$inner" netns "$ns"
    ip addr add "$net.$((base + 1))/30" dev "$outer"
    ip link set "$outer" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$net.$((base + 2))/30" dev "$inner"
    ip -n "$ns" link set "$inner" up
    ip -n "$ns" route add default via "$net.$((base + 1))"
    echo "host$i $ns $net.$((base + 2)) $net.$((base + 1))"
  done
  echo "services $net.254"
}

down() {
  # A removed namespace takes its end of the veth pair (and so the pair) with it.
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^${name}-h[0-9]+$" || true); do
    pids="$(ip netns pids "$ns" || true)"
    [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
    ip netns del "$ns" || true
  done
  for link in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E "^${name}h[0-9]+o$" || true); do
    ip link del "$link" 2>/dev/null || true  # may already be gone with its namespace
  done
  # (Not `ip … | grep -q`: with pipefail, grep quitting early fails the pipeline by SIGPIPE.)
  case "$(ip -o addr show dev lo)" in *" $net.254/32 "*) ip addr del "$net.254/32" dev lo ;; esac
}

case "$action" in
  up) down; up ;;
  down) down ;;
  *) echo "usage: $0 up|down NAME [COUNT]" >&2; exit 2 ;;
esac
