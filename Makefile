# cloudtaser reverse-connect: vault-bridge and cloudtaser-broker.
#
#   make            build both daemons and their forwarding executables into build/
#   make test       unit tests, fuzz corpus replay, integration tests, system checks
#   make demo       the whole path on loopback, narrated
#   make bench      throughput/latency table against a baseline measured in the same run
#   make bench-bulk single-stream bulk only, tunnel against nginx direct (quick loop, PERF=1 profiles)
#   make fuzz       run every libFuzzer target for FUZZ_SECONDS each (clang)
#   make asan       the same test suite on an ASan+UBSan build (sandbox in log mode)
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
             libgtest-dev libclang-rt-14-dev python3 python3-pytest curl openssl strace gdb \
             iproute2 procps util-linux
DEPS_STAMP := $(BUILD)/.deps-$(shell echo $(DEB_DEPS) | md5sum | cut -c1-8)

.PHONY: all deps test unit fuzz-replay integration demo bench bench-bulk fuzz asan clean format format-check check-clang
# Each daemon and its forwarding executable, which the daemon looks for beside itself.
EXES := cloudtaser-broker cloudtaser-broker-forward vault-bridge vault-bridge-forward
all: $(addprefix $(BUILD)/,$(EXES))

# ---------------------------------------------------------------- sources
SHARED_SRC := $(filter-out shared/tls_%.cc,$(wildcard shared/*.cc))
TLSLIB_SRC := $(wildcard shared/tls_*.cc)
# The forwarding process of each daemon is its own executable (forward_*.cc),
# linked without libtls.a and OpenSSL: a reference to either fails its link.
BROKER_FWD_SRC := $(wildcard broker/forward_*.cc)
BRIDGE_FWD_SRC := $(wildcard bridge/forward_*.cc)
BROKER_SRC := $(filter-out $(BROKER_FWD_SRC),$(wildcard broker/*.cc))
BRIDGE_SRC := $(filter-out $(BRIDGE_FWD_SRC),$(wildcard bridge/*.cc))
UNIT_SRC   := $(wildcard tests/unit/*.cc)

obj = $(patsubst %.cc,$(BUILD)/obj/%.o,$(1))

$(BUILD)/obj/%.o: %.cc | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS) $(ALLFLAGS) -c $< -o $@

$(BUILD)/libshared.a: $(call obj,$(SHARED_SRC))
	@rm -f $@; ar rcs $@ $^
$(BUILD)/libtls.a: $(call obj,$(TLSLIB_SRC))
	@rm -f $@; ar rcs $@ $^

$(BUILD)/cloudtaser-broker: $(call obj,$(BROKER_SRC)) $(BUILD)/libtls.a $(BUILD)/libshared.a
	$(CXX) $(ALLFLAGS) $^ -o $@ $(LDFLAGS) $(TLS_LIBS) $(SYS_LIBS)
$(BUILD)/vault-bridge: $(call obj,$(BRIDGE_SRC)) $(BUILD)/libtls.a $(BUILD)/libshared.a
	$(CXX) $(ALLFLAGS) $^ -o $@ $(LDFLAGS) $(TLS_LIBS) $(SYS_LIBS)
$(BUILD)/cloudtaser-broker-forward: $(call obj,$(BROKER_FWD_SRC)) $(BUILD)/libshared.a
	$(CXX) $(ALLFLAGS) $^ -o $@ $(LDFLAGS) $(SYS_LIBS)
$(BUILD)/vault-bridge-forward: $(call obj,$(BRIDGE_FWD_SRC)) $(BUILD)/libshared.a
	$(CXX) $(ALLFLAGS) $^ -o $@ $(LDFLAGS) $(SYS_LIBS)

$(BUILD)/unit-tests: $(call obj,$(UNIT_SRC)) $(BUILD)/libtls.a $(BUILD)/libshared.a
	$(CXX) $(ALLFLAGS) $^ -o $@ $(LDFLAGS) -lgtest -lgtest_main -pthread $(TLS_LIBS) $(SYS_LIBS)

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
check-clang:
	$(MAKE) --no-print-directory BUILD=build/clang CXX=clang++ \
	  $(addprefix build/clang/,$(EXES)) build/clang/unit-tests
	build/clang/unit-tests --gtest_brief=1
-include mk/*.mk

# ---------------------------------------------------------------- tests
test: all $(BUILD)/unit-tests
	$(MAKE) --no-print-directory unit fuzz-replay integration $(CHECKS)

unit: $(BUILD)/unit-tests
	$(BUILD)/unit-tests --gtest_brief=1

integration: all
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/integration

# The same tests on an ASan+UBSan build in build/asan (the integration tests
# find the binaries through CT_BUILD). Sanitizers and seccomp do not mix; the
# sandbox runs in log mode in this build (OpenSSH's CI does the same).
# GCC 12 reports stringop/array-bounds false positives on instrumented -O1
# code of std::vector; those two warnings stay on in the normal build.
ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
ASAN_MAKE = $(MAKE) --no-print-directory BUILD=build/asan SANITIZE="$(ASAN_FLAGS)" OPT="-O1 -g" \
            CXXFLAGS="-Wno-stringop-overflow -Wno-array-bounds"
asan:
	$(ASAN_MAKE) $(addprefix build/asan/,$(EXES)) build/asan/unit-tests
	build/asan/unit-tests --gtest_brief=1
	$(ASAN_MAKE) fuzz-replay
	@# LeakSanitizer runs above; sandboxed children cannot run it at exit (no
	@# /proc under Landlock, not dumpable), so the daemons run without it.
	CT_BUILD=build/asan ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	  $(PYTHON) -m pytest -q -p no:cacheprovider tests/integration

demo: all
	bash tests/demo.sh

bench: all
	bash tests/bench/bench.sh

bench-bulk: all
	bash tests/bench/bulk.sh

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')
format-check:
	clang-format --dry-run -Werror $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
