#!/usr/bin/env bash
# The kind loop's smoke test: add a user inside the api pod, then create and read a todo through
# the ingress (the host's port 8080, see cluster.yaml) or, with KIND_ROUTER=envoy-gateway, through
# the Gateway's Envoy (a ClusterIP Service in kind, reached by a port-forward on 8088).
set -euo pipefail

KUBECTL=${KUBECTL:-kubectl}
KUBE_CONTEXT=${KUBE_CONTEXT:-}
KIND_ROUTER=${KIND_ROUTER:-ingress-nginx}
RELEASE=${RELEASE:-todo}
kubectl=("$KUBECTL")
if [[ -n "$KUBE_CONTEXT" ]]; then
  kubectl+=(--context "$KUBE_CONTEXT")
fi

if [[ "$KIND_ROUTER" == envoy-gateway ]]; then
  BASE_URL=${BASE_URL:-http://localhost:8088}
  envoy=$("${kubectl[@]}" -n envoy-gateway-system get service -o name \
    --selector=gateway.envoyproxy.io/owning-gateway-namespace=default,gateway.envoyproxy.io/owning-gateway-name=todo)
  if [[ -z "$envoy" ]]; then
    echo "no Envoy Service for the Gateway default/todo: run make kind-up KIND_ROUTER=envoy-gateway" >&2
    exit 1
  fi
  echo "forwarding ${BASE_URL##*:} to $envoy"
  "${kubectl[@]}" -n envoy-gateway-system port-forward "$envoy" "${BASE_URL##*:}:80" >/dev/null &
  forward=$!
  trap 'kill "$forward" 2>/dev/null || true' EXIT
  for _ in $(seq 30); do
    curl --silent --output /dev/null "$BASE_URL/" && break
    sleep 1
  done
else
  BASE_URL=${BASE_URL:-http://localhost:8080}
fi
USERNAME="smoke-$(date +%s)"
PASSWORD="smoke-password-$RANDOM$RANDOM"

echo "adding user $USERNAME"
printf '%s\n' "$PASSWORD" \
  | "${kubectl[@]}" exec -i "deploy/$RELEASE-api" -- todoctl adduser "$USERNAME" --password-stdin

echo "creating a todo through $KIND_ROUTER at $BASE_URL"
location=$(curl --fail --silent --show-error --dump-header - --output /dev/null \
  --user "$USERNAME:$PASSWORD" --header 'Content-Type: application/json' \
  --data '{"name": "smoke", "task": "created from outside the cluster"}' \
  "$BASE_URL/api/v1.0/todos/" | tr -d '\r' | awk 'tolower($1) == "location:" {print $2}')
if [[ -z "$location" ]]; then
  echo "no Location header in the answer to POST /api/v1.0/todos/" >&2
  exit 1
fi

echo "reading $location"
body=$(curl --fail --silent --show-error --user "$USERNAME:$PASSWORD" "$location")
if [[ "$body" != *'"created from outside the cluster"'* ]]; then
  echo "unexpected body: $body" >&2
  exit 1
fi
echo "smoke test passed: $body"
