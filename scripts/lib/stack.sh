# Sourced by scripts/quickstart and scripts/bench-latency: builds and starts the local
# stack (control plane, registry, Git server with manifests-example/, `capstan run`) on
# loopback, and defines the probes both use. Expects ROOT, STATE, say, die.
# shellcheck shell=bash

# --- 1. what a fresh machine lacks ---------------------------------------------------
say "checking packages (docker-registry, git, OpenSSL headers, pkg-config)"
scripts/lib/install-packages docker-registry git libssl-dev pkg-config python3

say "building capstan (release)"
cargo build --release --locked --bin capstan 2>&1 | tail -n 1
CAPSTAN=${CARGO_TARGET_DIR:-$ROOT/target}/release/capstan

say "building the Kubernetes control plane and Gitea from their Go modules (cached after the first time)"
# The build logs go to target/ even when CARGO_TARGET_DIR puts cargo's output elsewhere.
mkdir -p "$ROOT/target"
scripts/k8s-env build >"$ROOT/target/stack-k8s-build.log" 2>&1 &
k8s_build=$!
scripts/gitea-env build >"$ROOT/target/stack-gitea-build.log" 2>&1 ||
  { tail -n 30 "$ROOT/target/stack-gitea-build.log" >&2; die "Gitea build failed"; }
wait "$k8s_build" ||
  { tail -n 30 "$ROOT/target/stack-k8s-build.log" >&2; die "control plane build failed"; }

# --- 2. a clean state folder and cleanup on exit --------------------------------------
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  CAPSTAN_K8S_STATE=$STATE/k8s scripts/k8s-env down >/dev/null 2>&1 || true
  CAPSTAN_GITEA_STATE=$STATE/gitea scripts/gitea-env down >/dev/null 2>&1 || true
}
trap cleanup EXIT
if [ -d "$STATE" ]; then
  CAPSTAN_K8S_STATE=$STATE/k8s scripts/k8s-env down >/dev/null 2>&1 || true
  CAPSTAN_GITEA_STATE=$STATE/gitea scripts/gitea-env down >/dev/null 2>&1 || true
  rm -rf "$STATE"
fi
mkdir -p "$STATE"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
wait_port() { # port what
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  die "$2 did not start listening on 127.0.0.1:$1"
}

REG_PORT=$(free_port)
CAPSTAN_PORT=$(free_port)
REGISTRY=127.0.0.1:$REG_PORT
IMAGE=$REGISTRY/stefanprodan/podinfo
export CAPSTAN_REGISTRY_TOKEN
CAPSTAN_REGISTRY_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(16))')

# --- 3. the cluster --------------------------------------------------------------------
say "starting the control plane (etcd, kube-apiserver, controllers, kwok nodes)"
CAPSTAN_K8S_STATE=$STATE/k8s scripts/k8s-env up >"$STATE/k8s-up.log" 2>&1 ||
  { tail -n 30 "$STATE/k8s-up.log" >&2; die "control plane did not start"; }
KUBECONFIG=$(CAPSTAN_K8S_STATE=$STATE/k8s scripts/k8s-env kubeconfig)
export KUBECONFIG
KUBECTL=$(scripts/k8s-env bin)/kubectl

# --- 4. the registry, notifying capstan of every push -----------------------------------
say "starting a container registry on $REGISTRY (notifications -> capstan)"
mkdir -p "$STATE/registry"
cat >"$STATE/registry/config.yml" <<EOF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $STATE/registry/data}
  delete: {enabled: true}
http:
  addr: $REGISTRY
notifications:
  endpoints:
    - name: capstan
      url: http://127.0.0.1:$CAPSTAN_PORT/hooks/registry
      headers:
        Authorization: [Bearer $CAPSTAN_REGISTRY_TOKEN]
      timeout: 2s
      threshold: 5
      backoff: 1s
      ignoredmediatypes: [application/octet-stream]
EOF
docker-registry serve "$STATE/registry/config.yml" >"$STATE/registry.log" 2>&1 &
pids+=($!)
wait_port "$REG_PORT" "the registry"
python3 scripts/lib/push_image.py "$REGISTRY" stefanprodan/podinfo 6.5.0 \
  --label org.opencontainers.image.source=https://github.com/stefanprodan/podinfo >/dev/null

# --- 5. the forge: a real Gitea holding manifests-example/ ---------------------------------
say "starting Gitea (Git server + commit statuses) with manifests-example/ as the repository"
CAPSTAN_GITEA_STATE=$STATE/gitea scripts/gitea-env up >"$STATE/gitea-up.log" 2>&1 ||
  { tail -n 30 "$STATE/gitea-up.log" >&2; die "Gitea did not start"; }
GITEA_URL=$(CAPSTAN_GITEA_STATE=$STATE/gitea scripts/gitea-env url)
GITEA_USER=$(CAPSTAN_GITEA_STATE=$STATE/gitea scripts/gitea-env user)
export GITEA_TOKEN
GITEA_TOKEN=$(CAPSTAN_GITEA_STATE=$STATE/gitea scripts/gitea-env token)
export CAPSTAN_HOOK_SECRET
CAPSTAN_HOOK_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
gitea_api() { # method path [json]
  curl -sf -X "$1" -H "Authorization: token $GITEA_TOKEN" -H 'Content-Type: application/json' \
    ${3:+--data "$3"} "$GITEA_URL/api/v1$2"
}
gitea_api POST /user/repos '{"name":"fleet","default_branch":"main","private":false}' >/dev/null ||
  die "cannot create the repository on Gitea"
# Gitea signs its push webhooks like GitHub (X-GitHub-Event, X-Hub-Signature-256).
gitea_api POST "/repos/$GITEA_USER/fleet/hooks" "{\"type\":\"gitea\",\"active\":true,\"events\":[\"push\"],\"config\":{\"url\":\"http://127.0.0.1:$CAPSTAN_PORT/hooks/github\",\"content_type\":\"json\",\"secret\":\"$CAPSTAN_HOOK_SECRET\"}}" >/dev/null ||
  die "cannot add the push webhook on Gitea"
REPO_URL=$GITEA_URL/$GITEA_USER/fleet.git
mkdir -p "$STATE/seed"
cp -r manifests-example/. "$STATE/seed/"
sed -i "s#ghcr.io/stefanprodan/podinfo#$IMAGE#" "$STATE/seed/deployment.yaml"
git -C "$STATE/seed" init -q -b main
git -C "$STATE/seed" add -A
git -C "$STATE/seed" -c user.name=quickstart -c user.email=quickstart@example.invalid commit -q -m "podinfo manifests"
basic=$(printf '%s:%s' "$GITEA_USER" "$GITEA_TOKEN" | base64 -w0)
seed_git() { git -C "$STATE/seed" -c "http.extraHeader=Authorization: Basic $basic" "$@"; }
seed_git push -q "$REPO_URL" main

# --- 6. capstan ---------------------------------------------------------------------------
mkdir -p "$STATE/capstan/policies"
cat >"$STATE/capstan/policies/podinfo.yaml" <<EOF
apiVersion: capstan.dev/v1alpha1
kind: ImagePolicy
metadata:
  name: podinfo
spec:
  image: $IMAGE
  policy:
    semver:
      range: '>=6.0.0 <7.0.0'
EOF
cat >"$STATE/capstan/capstan.yaml" <<EOF
repository:
  url: $REPO_URL
  branch: main
  auth:
    tokenEnv: GITEA_TOKEN
    username: $GITEA_USER
forge:
  kind: gitea
  apiUrl: $GITEA_URL/api/v1
  owner: $GITEA_USER
  repo: fleet
  tokenEnv: GITEA_TOKEN
registries:
  - host: $REGISTRY
    insecure: true
policies: policies/
update:
  mode: push
  interval: 1h        # the registry's notification triggers the update at once
targets:
  - name: quickstart
    path: .
    kubeconfig: $KUBECONFIG
    namespace: podinfo
    prune: true
    interval: 1h      # Gitea's push webhook triggers the sync at once
    healthTimeout: 2m
server:
  address: 127.0.0.1:$CAPSTAN_PORT
  registryWebhookTokenEnv: CAPSTAN_REGISTRY_TOKEN
  githubWebhookSecretEnv: CAPSTAN_HOOK_SECRET
EOF
say "starting capstan run (log: $STATE/capstan.log)"
CAPSTAN_LOG=${CAPSTAN_LOG:-info} "$CAPSTAN" --log-format json run -c "$STATE/capstan/capstan.yaml" \
  >"$STATE/capstan.log" 2>&1 &
CAPSTAN_PID=$!
pids+=("$CAPSTAN_PID")
wait_port "$CAPSTAN_PORT" "capstan"

wait_for() { # seconds description command...
  local limit=$1 what=$2; shift 2
  local deadline=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$CAPSTAN_PID" 2>/dev/null; then
      tail -n 20 "$STATE/capstan.log" >&2; die "capstan stopped while waiting for: $what"
    fi
    [ "$(date +%s)" -lt "$deadline" ] || { tail -n 20 "$STATE/capstan.log" >&2; die "timed out waiting for: $what"; }
    sleep 0.1
  done
}
deployment_image() { "$KUBECTL" -n podinfo get deployment podinfo -o jsonpath='{.spec.template.spec.containers[0].image}' 2>/dev/null; }
pods_ready() {
  local want
  want=$("$KUBECTL" -n podinfo get deployment podinfo -o jsonpath='{.spec.replicas}/{.metadata.generation}' 2>/dev/null)
  local have
  have=$("$KUBECTL" -n podinfo get deployment podinfo -o jsonpath='{.status.readyReplicas}/{.status.observedGeneration}' 2>/dev/null)
  [ -n "$want" ] && [ "$want" = "$have" ] &&
    [ "$("$KUBECTL" -n podinfo get deployment podinfo -o jsonpath='{.status.updatedReplicas}')" = "${want%/*}" ]
}
image_is() { [ "$(deployment_image)" = "$1" ]; }
git_head() { seed_git ls-remote "$REPO_URL" refs/heads/main | cut -f1; }
commit_state() { gitea_api GET "/repos/$GITEA_USER/fleet/commits/$1/status" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("state",""))'; }
log_has() { grep -q "$1" "$STATE/capstan.log"; }

stack_wait_for_first_sync() {
  say "waiting for the first sync (podinfo 6.5.0, 2 Pods Ready)"
  wait_for 120 "the first sync" image_is "$IMAGE:6.5.0"
  wait_for 120 "the first Pods Ready" pods_ready
}
