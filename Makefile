# cloudtaser reverse-connect: vault-bridge and cloudtaser-broker.
#
#   make            build both daemons and their forwarding executables into build/
#   make test       unit tests, fuzz corpus replay, integration tests, system checks
#   make demo       the whole path on loopback, narrated
#   make demo-beacon the same through a beacon relay (docs/beacon.md)
#   make bench      throughput/latency table against a baseline measured in the same run
#   make bench-bulk single-stream bulk only, tunnel against nginx direct (quick loop, PERF=1 profiles)
#   make bench-split CPU per request of each process; BIN_B=<other build> for an A/B in one sitting
#   make bench-wan  the tunnel over an emulated WAN link (tests/wan/, docs/wan.md) against a direct baseline
#   make faults     every fault and bad input of docs/reliability.md FAULT_RUNS times; rewrites its table
#   make fuzz       run every libFuzzer target for FUZZ_SECONDS each (clang)
#   make asan       the same test suite on an ASan+UBSan build (sandbox in log mode)
#   make soak       SOAK_MINUTES (default 10) of wrapper churn and a fault a minute, then a verdict
#
# Shared code is built into static libraries that the daemons, tests and
# fuzzers all link. Objects live under $(BUILD); dependencies come from -MMD.

BUILD     ?= build
CXX       ?= g++
CXXSTD    := -std=c++20
OPT       ?= -O2 -g
WARN      := -Wall -Wextra -Wshadow -Wconversion -Wsign-conversion -Wnon-virtual-dtor \
             -Wold-style-cast -Wcast-align -Wformat=2 -Werror
HARDEN    := -fstack-protector-strong -D_FORTIFY_SOURCE=2 -fPIE -fno-strict-aliasing
SANITIZE  ?=
CXXFLAGS  ?=
CPPFLAGS  += -I. -MMD -MP
ALLFLAGS   = $(CXXSTD) $(OPT) $(WARN) $(HARDEN) $(SANITIZE) $(CXXFLAGS)
LDFLAGS   += -pie -Wl,-z,relro,-z,now,-z,noexecstack $(SANITIZE)
TLS_LIBS  := -lssl -lcrypto
SYS_LIBS  := -lseccomp -lcap-ng
VERSION   := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
CPPFLAGS  += -DCT_VERSION='"$(VERSION)"'
PYTHON    ?= /usr/bin/python3

# Debian packages the build and the tests need. `make deps` installs what is
# missing when run as root and otherwise prints the apt-get line.
DEB_DEPS  := g++ clang make pkg-config libssl-dev libseccomp-dev libcap-ng-dev \
             libgtest-dev libclang-rt-14-dev python3 python3-pytest python3-pytest-xdist curl openssl strace gdb \
             iproute2 procps util-linux nftables
DEPS_STAMP := $(BUILD)/.deps-$(shell echo $(DEB_DEPS) | md5sum | cut -c1-8)

.PHONY: all deps test clang-build unit unit-tests check-layers check-ids fuzz-replay integration demo demo-beacon bench bench-bulk bench-split fuzz asan clean format format-check check-clang
.PHONY: soak
# Each daemon and its forwarding executable, which the daemon looks for beside itself.
EXES := cloudtaser-broker cloudtaser-broker-forward vault-bridge vault-bridge-forward \
        cloudtaser-beacon cloudtaser-beacon-forward
all: $(addprefix $(BUILD)/,$(EXES))

# ---------------------------------------------------------------- sources
# shared/ is one static library per layer, lowest first (docs/architecture.md).
# A layer may include and link only the layers before it; check-layers says so
# when one does not. Only shared/tls includes OpenSSL.
LAYERS     := base wire os ipc stream proc parent tls
layer_lib   = $(BUILD)/lib/libct_$(1).a
# The libraries a layer may use, in link order (itself first, base last).
layers_upto = $(foreach l,$(shell echo $(LAYERS) | tr ' ' '\n' | sed -n '1,/^$(1)$$/p' | tac),$(call layer_lib,$(l)))
ALL_LIBS   := $(call layers_upto,tls)
# The forwarding executables link every layer but tls (and no OpenSSL).
FWD_LIBS   := $(call layers_upto,parent)
SHARED_SRC := $(foreach l,$(LAYERS),$(wildcard shared/$(l)/*.cc))
# Each daemon's code: forward_*.cc only in its forwarding executable, metrics.cc
# (the broker's figures, decoded by both of its processes) in both, the rest in
# the daemon.
BROKER_BOTH    := broker/metrics.cc
BROKER_FWD_SRC := $(wildcard broker/forward_*.cc) $(BROKER_BOTH)
BRIDGE_FWD_SRC := $(wildcard bridge/forward_*.cc)
BROKER_SRC := $(filter-out $(wildcard broker/forward_*.cc),$(wildcard broker/*.cc))
BRIDGE_SRC := $(filter-out $(BRIDGE_FWD_SRC),$(wildcard bridge/*.cc))
# The daemons' own code that tests/unit/broker/ and bridge/ link (the rest has
# a main or a process around it): the bridge parent's status file, the TLS
# processes' sans-IO policy (bridge pool, counters, redial machine, OpenBao health).
BROKER_UNIT_SRC := $(BROKER_BOTH) broker/bridge_pool.cc broker/stats.cc broker/beacon_pool.cc
BRIDGE_UNIT_SRC := bridge/status_file.cc bridge/dial.cc bridge/vault_health.cc
# The beacon (docs/beacon.md): its figures (metrics.cc) are encoded by the TLS
# process and served by cloudtaser-beacon-forward, so both link them.
BEACON_BOTH     := beacon/metrics.cc
BEACON_FWD_SRC  := $(wildcard beacon/forward_*.cc) $(BEACON_BOTH)
BEACON_SRC      := $(filter-out $(wildcard beacon/forward_*.cc),$(wildcard beacon/*.cc))
BEACON_UNIT_SRC := beacon/pairing.cc beacon/options.cc $(BEACON_BOTH)

obj = $(patsubst %.cc,$(BUILD)/obj/%.o,$(1))

$(BUILD)/obj/%.o: %.cc | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS) $(ALLFLAGS) -c $< -o $@

define layer_rule
$(call layer_lib,$(1)): $(call obj,$(wildcard shared/$(1)/*.cc))
	@mkdir -p $$(dir $$@); rm -f $$@; ar rcs $$@ $$^
endef
$(foreach l,$(LAYERS),$(eval $(call layer_rule,$(l))))

$(BUILD)/cloudtaser-broker: $(call obj,$(BROKER_SRC)) $(ALL_LIBS)
	$(CXX) $(ALLFLAGS) $^ -o $@ $(LDFLAGS) $(TLS_LIBS) $(SYS_LIBS)
$(BUILD)/vault-bridge: $(call obj,$(BRIDGE_SRC)) $(ALL_LIBS)
	$(CXX) $(ALLFLAGS) $^ -o $@ $(LDFLAGS) $(TLS_LIBS) $(SYS_LIBS)
$(BUILD)/cloudtaser-broker-forward: $(call obj,$(BROKER_FWD_SRC)) $(FWD_LIBS)
	$(CXX) $(ALLFLAGS) $^ -o $@ $(LDFLAGS) $(SYS_LIBS)
$(BUILD)/vault-bridge-forward: $(call obj,$(BRIDGE_FWD_SRC)) $(FWD_LIBS)
	$(CXX) $(ALLFLAGS) $^ -o $@ $(LDFLAGS) $(SYS_LIBS)
# The beacon relay: the daemon (parent and TLS process) links OpenSSL; its
# forwarding executable (/metrics only) links every layer but tls, as the
# other two daemons' do.
$(BUILD)/cloudtaser-beacon: $(call obj,$(BEACON_SRC)) $(ALL_LIBS)
	$(CXX) $(ALLFLAGS) $^ -o $@ $(LDFLAGS) $(TLS_LIBS) $(SYS_LIBS)
$(BUILD)/cloudtaser-beacon-forward: $(call obj,$(BEACON_FWD_SRC)) $(FWD_LIBS)
	$(CXX) $(ALLFLAGS) $^ -o $@ $(LDFLAGS) $(SYS_LIBS)

# Unit tests: one binary per folder of tests/unit/, linked with only the
# layers that folder may use (tests/unit/stream/ cannot reach parent or tls).
# tests/unit/broker/ and tests/unit/bridge/ test a daemon's own code
# (BROKER_UNIT_SRC, BRIDGE_UNIT_SRC) and may use every layer.
UNIT_DIRS  := $(notdir $(wildcard tests/unit/*))
UNIT_BINS  := $(patsubst %,$(BUILD)/unit/%-tests,$(UNIT_DIRS))
unit_libs   = $(if $(filter $(1),$(LAYERS)),$(call layers_upto,$(1)),$(ALL_LIBS))
unit_extra  = $(if $(filter broker,$(1)),$(call obj,$(BROKER_UNIT_SRC)))$(if $(filter bridge,$(1)),$(call obj,$(BRIDGE_UNIT_SRC)))$(if $(filter beacon,$(1)),$(call obj,$(BEACON_UNIT_SRC)))
define unit_rule
$(BUILD)/unit/$(1)-tests: $(call obj,$(wildcard tests/unit/$(1)/*.cc)) $(call unit_extra,$(1)) $(call unit_libs,$(1))
	@mkdir -p $$(dir $$@)
	$$(CXX) $$(ALLFLAGS) $$^ -o $$@ $$(LDFLAGS) -lgtest -lgtest_main -pthread $(if $(filter $(1),$(LAYERS)),$(if $(filter tls,$(1)),$$(TLS_LIBS)),$$(TLS_LIBS)) $$(SYS_LIBS)
endef
$(foreach d,$(UNIT_DIRS),$(eval $(call unit_rule,$(d))))
unit-tests: $(UNIT_BINS)

# ---------------------------------------------------------------- deps
# $(call apt_ensure,PACKAGES[,EXTRA]): installs the Debian packages that are
# missing when run as root, else prints the apt-get line and fails. EXTRA is
# shell that may append to $$missing (e.g. a command that must exist).
define apt_ensure
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	$(2) \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing missing Debian packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null || exit 1; \
	  else echo "missing packages; run: sudo apt-get install -y $$missing" >&2; exit 1; fi; \
	fi
endef

deps: $(DEPS_STAMP)
$(DEPS_STAMP):
	@mkdir -p $(BUILD)
	$(call apt_ensure,$(DEB_DEPS))
	@touch $@

# Extra checks (systemd, firewall helper, SELinux, packages, chart, image)
# live in mk/*.mk; each appends its target to CHECKS.
CHECKS := check-clang

# The same sources, warnings as errors, with clang (into build/clang).
CLANG_MAKE = $(MAKE) --no-print-directory BUILD=build/clang CXX=clang++
clang-build:
	$(CLANG_MAKE) -j$(JOBS) $(addprefix build/clang/,$(EXES)) unit-tests
check-clang: clang-build
	$(CLANG_MAKE) unit
-include mk/*.mk

# ---------------------------------------------------------------- tests
# Everything `make test` compiles is built first, JOBS at a time (all cores);
# the tests and checks then run one at a time, so no timing-sensitive test
# shares the machine with a compiler. mk/*.mk add their builds to TEST_BUILD.
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
TEST_BUILD += all unit-tests clang-build
# Each step prints how long it took, so a CI log shows where its time budget goes.
TEST_STEPS = check-layers check-ids unit fuzz-replay integration $(CHECKS)
test:
	@s=$$(cut -d' ' -f1 /proc/uptime); \
	$(MAKE) --no-print-directory -j$(JOBS) $(TEST_BUILD) || exit 1; \
	echo "make test: build took $$(awk -v s=$$s '{printf "%.0f", $$1 - s}' /proc/uptime) s"
	@for step in $(TEST_STEPS); do \
	  s=$$(cut -d' ' -f1 /proc/uptime); \
	  $(MAKE) --no-print-directory $$step || exit 1; \
	  echo "make test: $$step took $$(awk -v s=$$s '{printf "%.0f", $$1 - s}' /proc/uptime) s"; \
	done

unit: $(UNIT_BINS)
	@for t in $(UNIT_BINS); do echo "$$t"; $$t --gtest_brief=1 || exit 1; done

# Fails when a file includes a layer after its own, <openssl/ appears outside
# shared/tls, or a forwarding executable links OpenSSL; then plants each kind
# of violation in a copy of the tree and fails if the check misses it.
check-layers: $(BUILD)/cloudtaser-broker-forward $(BUILD)/vault-bridge-forward \
              $(BUILD)/cloudtaser-beacon-forward
	$(PYTHON) tests/check_layers.py --build $(BUILD) --self-test

# Every test id the project cites (F-18, FI-06, ...) is defined in
# docs/reliability.md, and every test a row there names exists; and make faults'
# runner reads test output and that document as it should.
check-ids:
	$(PYTHON) tests/check_ids.py
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/faults/test_run.py

# Several tests at a time when pytest-xdist is installed (make deps installs
# it; most tests wait on deadlines, not on the CPU), then the tests marked
# serial in conftest.py, which measure the machine, one at a time. The slowest
# tests are listed, to keep CI inside its budget.
TEST_WORKERS ?= 4
XDIST = $(shell $(PYTHON) -c "import xdist" 2>/dev/null && echo "-n $(TEST_WORKERS)")
integration: all
	$(PYTHON) -m pytest -q -p no:cacheprovider --durations=10 $(XDIST) -m "not serial" tests/integration
	$(PYTHON) -m pytest -q -p no:cacheprovider --durations=5 -m serial tests/integration

# The same tests on an ASan+UBSan build in build/asan (the integration tests
# find the binaries through CT_BUILD). Sanitizers and seccomp do not mix; the
# sandbox runs in log mode in this build (OpenSSH's CI does the same).
# GCC 12 reports stringop/array-bounds false positives on instrumented -O1
# code of std::vector; those two warnings stay on in the normal build.
ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
ASAN_MAKE = $(MAKE) --no-print-directory BUILD=build/asan SANITIZE="$(ASAN_FLAGS)" OPT="-O1 -g" \
            CXXFLAGS="-Wno-stringop-overflow -Wno-array-bounds"
asan:
	$(ASAN_MAKE) $(addprefix build/asan/,$(EXES)) unit
	$(ASAN_MAKE) fuzz-replay
	@# LeakSanitizer runs above; sandboxed children cannot run it at exit (no
	@# /proc under Landlock, not dumpable), so the daemons run without it.
	CT_BUILD=build/asan ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	  $(PYTHON) -m pytest -q -p no:cacheprovider tests/integration

demo: all
	bash tests/demo.sh
# The same path through cloudtaser-beacon, which both daemons dial (docs/beacon.md).
demo-beacon: all
	bash tests/demo.sh --beacon

bench: all
	bash tests/bench/bench.sh

bench-bulk: all
	bash tests/bench/bulk.sh

# CPU per request of each process; BIN_B=dir of another build for an A/B in one sitting.
bench-split: all
	bash tests/bench/split.sh

# WAN figures (docs/wan.md): time to secret, 1,000 wrappers at once, one 64 MiB stream,
# reconnect after a broker restart; tunnel beside a direct client through the same emulator.
.PHONY: bench-wan
bench-wan: all
	$(PYTHON) tests/bench/wan.py

# Every fault and bad input docs/reliability.md defines, FAULT_RUNS times each, link
# faults at 0 and 40 ms RTT too; rewrites the results table at the end of that file.
# FAULT_IDS=FI-,T-15 runs only those ids (and writes build/faults/table.md only).
# FAULT_JOBS=N runs N pytest processes at once (the suite's serial tests still alone).
FAULT_RUNS ?= 20
FAULT_IDS  ?=
FAULT_JOBS ?= 1
.PHONY: faults
faults: all unit-tests
	$(PYTHON) tests/faults/run.py --runs $(FAULT_RUNS) --jobs $(FAULT_JOBS) --ids "$(FAULT_IDS)" --build $(BUILD) \
	  --note "$(FAULT_NOTE)"

# Wrapper churn and a random fault every minute for SOAK_MINUTES, then RSS,
# fds, streams, corruption and supervision checked; exits 1 on FAIL
# (docs/reliability.md#soak). SOAK_ARGS passes more (--seed, --clients, --out).
SOAK_MINUTES ?= 10
soak: all
	$(PYTHON) tests/soak/soak.py --minutes $(SOAK_MINUTES) $(SOAK_ARGS)

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')
format-check:
	clang-format --dry-run -Werror $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
