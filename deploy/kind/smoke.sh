#!/usr/bin/env bash
# The kind loop's smoke test: add a user inside the api pod, then create and read a todo through
# the ingress (the host's port 8080, see cluster.yaml).
set -euo pipefail

KUBECTL=${KUBECTL:-kubectl}
KUBE_CONTEXT=${KUBE_CONTEXT:-}
RELEASE=${RELEASE:-todo}
kubectl=("$KUBECTL")
if [[ -n "$KUBE_CONTEXT" ]]; then
  kubectl+=(--context "$KUBE_CONTEXT")
fi
BASE_URL=${BASE_URL:-http://localhost:8080}
USERNAME="smoke-$(date +%s)"
PASSWORD="smoke-password-$RANDOM$RANDOM"

echo "adding user $USERNAME"
printf '%s\n' "$PASSWORD" \
  | "${kubectl[@]}" exec -i "deploy/$RELEASE-api" -- todoctl adduser "$USERNAME" --password-stdin

echo "creating a todo through the ingress at $BASE_URL"
location=$(curl --fail --silent --show-error --dump-header - --output /dev/null \
  --user "$USERNAME:$PASSWORD" --header 'Content-Type: application/json' \
  --data '{"name": "smoke", "task": "created through the ingress"}' \
  "$BASE_URL/api/v1.0/todos/" | tr -d '\r' | awk 'tolower($1) == "location:" {print $2}')
if [[ -z "$location" ]]; then
  echo "no Location header in the answer to POST /api/v1.0/todos/" >&2
  exit 1
fi

echo "reading $location"
body=$(curl --fail --silent --show-error --user "$USERNAME:$PASSWORD" "$location")
if [[ "$body" != *'"created through the ingress"'* ]]; then
  echo "unexpected body: $body" >&2
  exit 1
fi
echo "smoke test passed: $body"
