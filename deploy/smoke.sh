#!/usr/bin/env bash
# Smoke test of a running nano-orders app: POST an order, then poll GET /order/{id} until it is fulfilled.
#
#   deploy/smoke.sh [BASE_URL]          default http://localhost:$HTTP_PORT (the k3d ingress)
#   SMOKE_TIMEOUT=60 deploy/smoke.sh    seconds to wait, for the app to answer and for the order to be fulfilled
#
# Works against any deployment of the wire contract: k3d, `spin up`, or the project's own host.
set -euo pipefail
# shellcheck source=lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

need_tool curl "Install curl."
base="${1:-http://localhost:$HTTP_PORT}"
base="${base%/}"
timeout="${SMOKE_TIMEOUT:-60}"
deadline=$(( $(date +%s) + timeout ))
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# POST until the app answers 202: right after a deploy the ingress may still say 404/502/503.
code=""
while :; do
  code="$(curl -sS -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' \
    -H 'Content-Type: application/json' --data '{"details": "smoke test"}' \
    "$base/order" 2>"$tmp/err" || true)"
  [ "$code" = 202 ] && break
  if [ "$(date +%s)" -ge "$deadline" ]; then
    die "POST $base/order did not answer 202 within ${timeout}s (last status: ${code:-none}; $(cat "$tmp/err" "$tmp/body" 2>/dev/null | head -c 300))"
  fi
  sleep 1
done

# The order's address: the Location header, else the body's task.href.
location="$(tr -d '\r' <"$tmp/headers" | sed -n 's/^[Ll]ocation:[[:space:]]*//p' | tail -n 1)"
if [ -z "$location" ]; then
  location="$(sed -n 's/.*"href"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$tmp/body" | head -n 1)"
fi
case "$location" in
  /order/?*) ;;
  *) die "202 without a usable Location header or task.href: $(cat "$tmp/body")" ;;
esac
say "POST $base/order -> 202, Location: $location"

status=""
while :; do
  code="$(curl -sS -o "$tmp/status" -w '%{http_code}' "$base$location" 2>"$tmp/err" || true)"
  if [ "$code" = 200 ]; then
    status="$(sed -n 's/.*"status"[[:space:]]*:[[:space:]]*"\([a-z_]*\)".*/\1/p' "$tmp/status" | head -n 1)"
    [ "$status" = fulfilled ] && break
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    die "GET $base$location: not fulfilled within ${timeout}s (last: HTTP ${code:-none} $(head -c 300 "$tmp/status" 2>/dev/null))"
  fi
  sleep 0.5
done
say "GET $base$location -> 200 $(cat "$tmp/status")"
say "smoke test passed: order ${location#/order/} is fulfilled"
