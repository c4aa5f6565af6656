# Cluster deployment: static daemons, OCI images, Helm chart, certificate helper.
#
#   make static        build/cloudtaser-broker-static, build/vault-bridge-static,
#                      build/cloudtaser-beacon-static and their forwarding executables
#                      build/*-forward-static (no dynamic loader)
#   make image         three OCI image layouts: build/cloudtaser-broker-oci.tar (the
#                      cluster's broker, deploy/Dockerfile), build/vault-bridge-oci.tar
#                      (the bridge as a container on the vault host, deploy/Dockerfile.bridge)
#                      and build/cloudtaser-beacon-oci.tar (the relay, deploy/Dockerfile.beacon)
#   make check-cluster every check below (part of `make test`)
#     check-static     for each daemon: ldd says static; the forwarding executable holds
#                      no OpenSSL; runs as 65532 in an empty read-only root (the bridge
#                      there links to a real broker over pinned mTLS on loopback and
#                      carries a wrapper's request to an OpenBao stand-in; the beacon
#                      there pairs a broker's connection with a bridge's and relays)
#     check-image      for each image: layout, manifest, config (user, entrypoint, ports,
#                      labels), digests, against its Dockerfile; umoci unpacks it and the
#                      unpacked rootfs runs like check-static
#     check-chart      renders deploy/helm/cloudtaser (helm if on PATH, else the
#                      offline renderer), Kubernetes schema, yamllint, behaviour;
#                      runs the beacon and the beacon-mode broker with the rendered args
#     check-certs      cloudtaser-certs output: chain, usages, pins, real mTLS
#     check-metrics    promtool check metrics on the broker's real /metrics (with
#                      and without a bridge) and on vault-bridge --status-file
#     check-alerts     promtool check rules and test rules on
#                      deploy/prometheus/cloudtaser-alerts.yaml (skipped, saying
#                      so, without promtool)
#
# Each target installs the Debian and npm packages it needs when run as root.

CLUSTER_DIR      := tests/cluster
CHART            := deploy/helm/cloudtaser
STATIC_BROKER    := $(BUILD)/cloudtaser-broker-static
STATIC_FORWARD   := $(BUILD)/cloudtaser-broker-forward-static
STATIC_BRIDGE    := $(BUILD)/vault-bridge-static
STATIC_BRIDGE_FWD := $(BUILD)/vault-bridge-forward-static
OCI_TAR          := $(BUILD)/cloudtaser-broker-oci.tar
OCI_BRIDGE_TAR   := $(BUILD)/vault-bridge-oci.tar
STATIC_BEACON    := $(BUILD)/cloudtaser-beacon-static
STATIC_BEACON_FWD := $(BUILD)/cloudtaser-beacon-forward-static
OCI_BEACON_TAR   := $(BUILD)/cloudtaser-beacon-oci.tar
# What each image says it is (the Dockerfiles carry the same LABEL lines).
BROKER_DESC      := cloudtaser-broker: the in-cluster end of the reverse-connect tunnel to OpenBao
BRIDGE_DESC      := vault-bridge: dials out from the OpenBao host to cloudtaser-broker over pinned mTLS
BEACON_DESC      := cloudtaser-beacon: pairs outbound broker and bridge connections and relays them unread
# The bridge image's one file besides its executables (distroless has the same).
BRIDGE_NSSWITCH  := deploy/image/nsswitch.conf
HELMRENDER       := $(BUILD)/helmrender
CLUSTER_NPM      := $(BUILD)/npm
# Pinned so a schema release cannot change the result of an old commit.
CLUSTER_NPM_PKGS := kubernetes-models@5.1.0 js-yaml@4.1.0
CLUSTER_DEB_DEPS := golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev \
                    golang-k8s-sigs-yaml-dev golang-github-xeipuuv-gojsonschema-dev \
                    yamllint umoci jq openssl curl iproute2 util-linux coreutils tar gzip \
                    libssl-dev libseccomp-dev libcap-ng-dev
CLUSTER_STAMP    := $(BUILD)/.cluster-deps-$(shell echo $(CLUSTER_DEB_DEPS) | md5sum | cut -c1-8)

.PHONY: static image cluster-deps check-cluster check-static check-image check-chart check-certs \
        check-metrics check-alerts
CHECKS += check-cluster

cluster-deps: $(CLUSTER_STAMP)
$(CLUSTER_STAMP):
	@mkdir -p $(BUILD)
	$(call apt_ensure,$(CLUSTER_DEB_DEPS),command -v node >/dev/null && command -v npm >/dev/null || missing="$$missing nodejs npm";)
	@touch $@

$(CLUSTER_NPM)/.stamp: mk/cluster.mk | $(CLUSTER_STAMP)
	@mkdir -p $(CLUSTER_NPM)
	@[ -f $(CLUSTER_NPM)/package.json ] || echo '{"private": true}' > $(CLUSTER_NPM)/package.json
	cd $(CLUSTER_NPM) && npm install --no-audit --no-fund --no-update-notifier --loglevel=error --save-exact $(CLUSTER_NPM_PKGS)
	@touch $@

# ---------------------------------------------------------------- static
# -pie is dropped: a static non-PIE executable needs no loader at all. The
# broker listens on numeric addresses only. The bridge resolves the broker's
# name: static glibc has the files and dns lookups built in (no NSS module to
# load), reading /etc/nsswitch.conf, /etc/hosts and /etc/resolv.conf.
static: $(STATIC_BROKER) $(STATIC_FORWARD) $(STATIC_BRIDGE) $(STATIC_BRIDGE_FWD) \
        $(STATIC_BEACON) $(STATIC_BEACON_FWD)
$(STATIC_BROKER): $(call obj,$(BROKER_SRC)) $(ALL_LIBS)
	$(CXX) $(ALLFLAGS) $^ -o $@ $(filter-out -pie,$(LDFLAGS)) -static $(TLS_LIBS) $(SYS_LIBS) -pthread
# No OpenSSL here either; the image installs it beside the broker as
# /cloudtaser-broker-forward, where the broker looks for it.
$(STATIC_FORWARD): $(call obj,$(BROKER_FWD_SRC)) $(FWD_LIBS)
	$(CXX) $(ALLFLAGS) $^ -o $@ $(filter-out -pie,$(LDFLAGS)) -static $(SYS_LIBS) -pthread
$(STATIC_BRIDGE): $(call obj,$(BRIDGE_SRC)) $(ALL_LIBS)
	$(CXX) $(ALLFLAGS) $^ -o $@ $(filter-out -pie,$(LDFLAGS)) -static $(TLS_LIBS) $(SYS_LIBS) -pthread
$(STATIC_BRIDGE_FWD): $(call obj,$(BRIDGE_FWD_SRC)) $(FWD_LIBS)
	$(CXX) $(ALLFLAGS) $^ -o $@ $(filter-out -pie,$(LDFLAGS)) -static $(SYS_LIBS) -pthread
# The beacon binds numeric addresses only and resolves no name.
$(STATIC_BEACON): $(call obj,$(BEACON_SRC)) $(ALL_LIBS)
	$(CXX) $(ALLFLAGS) $^ -o $@ $(filter-out -pie,$(LDFLAGS)) -static $(TLS_LIBS) $(SYS_LIBS) -pthread
$(STATIC_BEACON_FWD): $(call obj,$(BEACON_FWD_SRC)) $(FWD_LIBS)
	$(CXX) $(ALLFLAGS) $^ -o $@ $(filter-out -pie,$(LDFLAGS)) -static $(SYS_LIBS) -pthread

# ---------------------------------------------------------------- image
image: $(OCI_TAR) $(OCI_BRIDGE_TAR) $(OCI_BEACON_TAR)
$(OCI_TAR): $(STATIC_BROKER) $(STATIC_FORWARD) deploy/image/build-oci.sh VERSION mk/cluster.mk
	bash deploy/image/build-oci.sh --name cloudtaser-broker --binary $(STATIC_BROKER) \
	  --forward $(STATIC_FORWARD) --version $(VERSION) --out $@ \
	  --expose 8443/tcp --expose 8444/tcp --expose 9090/tcp \
	  --label 'org.opencontainers.image.description=$(BROKER_DESC)'
# No --expose: the bridge only dials out.
$(OCI_BRIDGE_TAR): $(STATIC_BRIDGE) $(STATIC_BRIDGE_FWD) $(BRIDGE_NSSWITCH) deploy/image/build-oci.sh VERSION mk/cluster.mk
	bash deploy/image/build-oci.sh --name vault-bridge --binary $(STATIC_BRIDGE) \
	  --forward $(STATIC_BRIDGE_FWD) --version $(VERSION) --out $@ \
	  --file $(BRIDGE_NSSWITCH):etc/nsswitch.conf \
	  --label 'org.opencontainers.image.description=$(BRIDGE_DESC)'
# 443 for brokers and bridges, 9090 for --metrics-listen (as the broker's image).
$(OCI_BEACON_TAR): $(STATIC_BEACON) $(STATIC_BEACON_FWD) deploy/image/build-oci.sh VERSION mk/cluster.mk
	bash deploy/image/build-oci.sh --name cloudtaser-beacon --binary $(STATIC_BEACON) \
	  --forward $(STATIC_BEACON_FWD) --version $(VERSION) --out $@ \
	  --expose 443/tcp --expose 9090/tcp \
	  --label 'org.opencontainers.image.description=$(BEACON_DESC)'

# ---------------------------------------------------------------- checks
$(HELMRENDER): $(CLUSTER_DIR)/helmrender/main.go $(CLUSTER_DIR)/helmrender/go.mod | $(CLUSTER_STAMP)
	@rm -rf $(BUILD)/gopath/src/helmrender && mkdir -p $(BUILD)/gopath/src/helmrender
	cp $^ $(BUILD)/gopath/src/helmrender/
	cd $(BUILD)/gopath/src && GO111MODULE=off GOFLAGS= GOPROXY=off CGO_ENABLED=0 \
	  GOPATH=$(abspath $(BUILD)/gopath):/usr/share/gocode GOCACHE=$(abspath $(BUILD)/go-cache) \
	  go build -o $(abspath $@) helmrender

check-cluster: check-static check-image check-chart check-certs check-metrics check-alerts
# Linked with everything else make test builds, in parallel (objects are shared).
TEST_BUILD += $(STATIC_BROKER) $(STATIC_FORWARD) $(STATIC_BRIDGE) $(STATIC_BRIDGE_FWD) \
              $(STATIC_BEACON) $(STATIC_BEACON_FWD)

# The bridge's checks run it against the regular broker build (the cluster's
# side of the link), beside which its forwarding executable is.
BRIDGE_CHECK_BROKER := $(BUILD)/cloudtaser-broker $(BUILD)/cloudtaser-broker-forward
# The beacon's checks pair the regular broker and bridge builds through it
# (the cluster's and the vault host's sides, both dialling out).
BEACON_CHECK_PEERS  := $(BRIDGE_CHECK_BROKER) $(BUILD)/vault-bridge $(BUILD)/vault-bridge-forward

check-static: $(STATIC_BROKER) $(STATIC_FORWARD) $(STATIC_BRIDGE) $(STATIC_BRIDGE_FWD) \
              $(STATIC_BEACON) $(STATIC_BEACON_FWD) \
              $(BRIDGE_NSSWITCH) $(BRIDGE_CHECK_BROKER) $(BEACON_CHECK_PEERS) | $(CLUSTER_STAMP)
	bash $(CLUSTER_DIR)/check-static.sh cloudtaser-broker $(STATIC_BROKER) $(STATIC_FORWARD) $(VERSION)
	BROKER_BIN=$(BUILD)/cloudtaser-broker \
	  bash $(CLUSTER_DIR)/check-static.sh vault-bridge $(STATIC_BRIDGE) $(STATIC_BRIDGE_FWD) $(VERSION)
	BROKER_BIN=$(BUILD)/cloudtaser-broker BRIDGE_BIN=$(BUILD)/vault-bridge \
	  bash $(CLUSTER_DIR)/check-static.sh cloudtaser-beacon $(STATIC_BEACON) $(STATIC_BEACON_FWD) $(VERSION)

check-image: $(OCI_TAR) $(OCI_BRIDGE_TAR) $(OCI_BEACON_TAR) $(BRIDGE_CHECK_BROKER) \
             $(BEACON_CHECK_PEERS) | $(CLUSTER_STAMP)
	$(PYTHON) $(CLUSTER_DIR)/check_oci_image.py --name cloudtaser-broker --image $(OCI_TAR) \
	  --binary $(STATIC_BROKER) --forward $(STATIC_FORWARD) --version $(VERSION) \
	  --dockerfile deploy/Dockerfile --expose 8443/tcp:wrappers --expose 8444/tcp:bridges \
	  --expose 9090/tcp:metrics --label 'org.opencontainers.image.description=$(BROKER_DESC)'
	bash $(CLUSTER_DIR)/check-image-runs.sh $(OCI_TAR) $(VERSION) cloudtaser-broker
	$(PYTHON) $(CLUSTER_DIR)/check_oci_image.py --name vault-bridge --image $(OCI_BRIDGE_TAR) \
	  --binary $(STATIC_BRIDGE) --forward $(STATIC_BRIDGE_FWD) --version $(VERSION) \
	  --dockerfile deploy/Dockerfile.bridge --file etc/nsswitch.conf=$(BRIDGE_NSSWITCH) \
	  --label 'org.opencontainers.image.description=$(BRIDGE_DESC)'
	BROKER_BIN=$(BUILD)/cloudtaser-broker \
	  bash $(CLUSTER_DIR)/check-image-runs.sh $(OCI_BRIDGE_TAR) $(VERSION) vault-bridge
	$(PYTHON) $(CLUSTER_DIR)/check_oci_image.py --name cloudtaser-beacon --image $(OCI_BEACON_TAR) \
	  --binary $(STATIC_BEACON) --forward $(STATIC_BEACON_FWD) --version $(VERSION) \
	  --dockerfile deploy/Dockerfile.beacon --expose 443/tcp:brokers-and-bridges \
	  --expose 9090/tcp:metrics --label 'org.opencontainers.image.description=$(BEACON_DESC)'
	BROKER_BIN=$(BUILD)/cloudtaser-broker BRIDGE_BIN=$(BUILD)/vault-bridge \
	  bash $(CLUSTER_DIR)/check-image-runs.sh $(OCI_BEACON_TAR) $(VERSION) cloudtaser-beacon

# Real helm is used whenever it is on PATH; the offline renderer otherwise.
# The daemons run once with the chart's own beacon-mode args (a beacon, a
# broker, a bridge pairing through them on loopback).
check-chart: $(HELMRENDER) $(CLUSTER_NPM)/.stamp $(addprefix $(BUILD)/,$(EXES))
	HELM="$$(command -v helm || echo $(abspath $(HELMRENDER)))" K8S_MODELS_PREFIX=$(CLUSTER_NPM) \
	  BROKER_BIN=$(BUILD)/cloudtaser-broker BEACON_BIN=$(BUILD)/cloudtaser-beacon \
	  node --test $(CLUSTER_DIR)/chart.test.mjs

check-certs: | $(CLUSTER_STAMP)
	bash $(CLUSTER_DIR)/check-certs.sh

# promtool comes from Debian's prometheus package (about 94 MB installed; no
# smaller package ships it), installed by the script when missing and root.
check-metrics: $(addprefix $(BUILD)/,$(EXES)) | $(CLUSTER_STAMP)
	bash $(CLUSTER_DIR)/check-metrics.sh $(BUILD)/cloudtaser-broker $(BUILD)/vault-bridge

# promtool: .ci/run installs it; without it the script says it skipped.
check-alerts:
	bash $(CLUSTER_DIR)/check-alerts.sh
