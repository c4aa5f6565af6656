# libFuzzer targets (fuzz/*.cc).
#
#   make fuzz-replay   every file under fuzz/corpus/<target>/ through its target,
#                      built with g++ and the normal flags against the layer libraries,
#                      linked with fuzz/replay_main.cc instead of libFuzzer.
#                      Part of `make test`; takes seconds.
#   make fuzz          each target built with clang, libFuzzer, ASan and UBSan and
#                      run FUZZ_SECONDS (default 60) each. New inputs go to a
#                      scratch directory and are merged into fuzz/corpus/<target>/
#                      with -merge=1 (only inputs that add coverage are kept).
#                      A crash stops the run and leaves the reproducer in
#                      build/fuzz/artifacts/. Installs clang when root.
#                      FUZZ_RUNS=N runs each target to N executions (libFuzzer
#                      -runs=N) instead of FUZZ_SECONDS (both given: whichever
#                      comes first); FUZZ_TARGETS="a b" picks targets (or:
#                      make fuzz-run-<target>). FUZZ_SANITIZER=undefined
#                      builds the targets with UBSan alone (build/fuzz-undefined/):
#                      3-4x the executions per second of ASan+UBSan on the
#                      session target, for counts ASan makes too slow; every input
#                      such a run keeps is replayed under ASan by `make asan`
#                      (fuzz-replay) and by `make fuzz-asan-check`. Each run
#                      rewrites its own row of the table between the
#                      fuzz-table markers in docs/reliability.md (executions,
#                      exec/s, corpus, coverage of the merged corpus, crashes,
#                      date, rev, command; fuzz/fuzz_table.py).
#   make fuzz-seeds    rewrites the hand-made seeds (fuzz/make_seeds.cc).
#   make fuzz-minimize rebuilds each corpus as the smallest set with the same
#                      coverage (keeps seed-* and regress-* files as they are).

FUZZ_ALL_TARGETS := frame_decoder_fuzz session_fuzz hello_fuzz ipc_fuzz shm_ring_fuzz \
                    vault_health_fuzz rendezvous_fuzz
FUZZ_TARGETS  ?= $(FUZZ_ALL_TARGETS)
FUZZ_SECONDS  ?= 60
FUZZ_RUNS     ?=
# What bounds a run, and how the table names the command that did it. With
# FUZZ_RUNS, a FUZZ_SECONDS given too (not the default) caps the time as well:
# the run stops at whichever comes first and the table says how far it got.
# The time bound is timeout(1) sending SIGINT (libFuzzer prints its final
# stats and exits; SIGKILL 120 s later if it has not), not -max_total_time:
# libFuzzer times that by the wall clock, and a clock set an hour forward or
# back (a fault test on this machine did) ends a run at once or lets it run
# an hour longer. Durations come from /proc/uptime for the same reason.
FUZZ_TIMED    = $(if $(FUZZ_RUNS),$(filter-out default file,$(origin FUZZ_SECONDS)),yes)
FUZZ_BOUND    = $(if $(FUZZ_RUNS),-runs=$(FUZZ_RUNS))
FUZZ_TIMEOUT  = $(if $(FUZZ_TIMED),timeout -k 120 -s INT $(FUZZ_SECONDS))
FUZZ_HOWLONG  = $(strip $(if $(FUZZ_RUNS),to $(FUZZ_RUNS) executions)$(if $(FUZZ_TIMED), for $(FUZZ_SECONDS) s))
FUZZ_CMD      = make fuzz-run-$(1)$(if $(FUZZ_RUNS), FUZZ_RUNS=$(FUZZ_RUNS))$(if $(FUZZ_TIMED), FUZZ_SECONDS=$(FUZZ_SECONDS))$(if $(filter-out address,$(FUZZ_SANITIZER)), FUZZ_SANITIZER=$(FUZZ_SANITIZER))
FUZZ_CXX      ?= clang++
FUZZ_DIR      := $(BUILD)/fuzz
# Which sanitizers the libFuzzer builds carry: address (ASan and UBSan, the
# default) or undefined (UBSan alone). Each has its own objects and binaries
# (FUZZ_CC_DIR); logs, scratch corpora and artifacts stay in FUZZ_DIR.
FUZZ_SANITIZER ?= address
FUZZ_SAN_address   := -fsanitize=address,undefined
FUZZ_SAN_undefined := -fsanitize=undefined
ifeq ($(FUZZ_SAN_$(FUZZ_SANITIZER)),)
$(error FUZZ_SANITIZER=$(FUZZ_SANITIZER): use address or undefined)
endif
FUZZ_SAN      := $(FUZZ_SAN_$(FUZZ_SANITIZER)) -fno-sanitize-recover=all
FUZZ_CC_DIR   := $(FUZZ_DIR)$(if $(filter-out address,$(FUZZ_SANITIZER)),-$(FUZZ_SANITIZER))
FUZZ_FLAGS    := $(CXXSTD) -O1 -g -fno-omit-frame-pointer $(FUZZ_SAN)
# OSS-Fuzz's limits (CIFuzz arguments).
FUZZ_ARGS     := -timeout=25 -rss_limit_mb=2560 -print_final_stats=1
# Largest input per target: two max-size frames; a session script of a few
# hundred actions; a HELLO payload with room for wrong sizes; an IPC body far
# above every cap but MATERIAL's (whose cap only adds copying time); a ring
# script of 256 actions of up to 14 bytes (the harness stops at 256); an
# OpenBao health answer past its 4 KiB cap; a beacon preamble or a few answers.
FUZZ_MAXLEN_frame_decoder_fuzz := 33000
FUZZ_MAXLEN_session_fuzz       := 4096
FUZZ_MAXLEN_hello_fuzz         := 128
FUZZ_MAXLEN_ipc_fuzz           := 8192
FUZZ_MAXLEN_shm_ring_fuzz      := 4096
FUZZ_MAXLEN_vault_health_fuzz  := 5000
FUZZ_MAXLEN_rendezvous_fuzz    := 1024
# Dictionaries: wire constants and boundary integers.
FUZZ_DICT_frame_decoder_fuzz   := -dict=fuzz/protocol.dict
FUZZ_DICT_hello_fuzz           := -dict=fuzz/protocol.dict
# The session harness's own comparisons are its model's container walks and
# oracle checks, not input parsing: trace-cmp hooks on them cost a quarter of
# its time (perf) and steer no mutation. The library code keeps them.
FUZZ_NOCMP_session_fuzz        := -fno-sanitize-coverage=trace-cmp
FUZZ_DEB_DEPS := clang libclang-rt-14-dev
FUZZ_STAMP    := $(FUZZ_DIR)/.deps-$(shell echo $(FUZZ_DEB_DEPS) | md5sum | cut -c1-8)

# make test builds the replay executables with everything else, in parallel.
TEST_BUILD    += $(FUZZ_REPLAYS)
FUZZ_RUN_RULES := $(patsubst %,fuzz-run-%,$(FUZZ_ALL_TARGETS))
FUZZ_REPLAYS  := $(patsubst %,$(FUZZ_DIR)/replay/%,$(FUZZ_TARGETS))

.PHONY: fuzz-seeds fuzz-minimize $(FUZZ_RUN_RULES)
# Objects reached only through pattern rules are intermediate to make; keep
# them so a replay after an edit recompiles one file, not all.
.SECONDARY: $(patsubst %,$(BUILD)/obj/fuzz/%.o,$(FUZZ_ALL_TARGETS) replay_main make_seeds) \
            $(patsubst %,$(FUZZ_CC_DIR)/obj/fuzz/%.o,$(FUZZ_ALL_TARGETS))

# ---------------------------------------------------------------- replay (g++)
# Daemon code a target reaches: the broker's and the beacon's figures, the
# beacon's LISTENER options, the bridge's reading of OpenBao's health answer
# (none needs OpenSSL).
FUZZ_DAEMON_SRC := $(BROKER_BOTH) $(BEACON_BOTH) beacon/options.cc bridge/vault_health.cc
$(FUZZ_DIR)/replay/%: $(BUILD)/obj/fuzz/%.o $(BUILD)/obj/fuzz/replay_main.o $(call obj,$(FUZZ_DAEMON_SRC)) $(FWD_LIBS)
	@mkdir -p $(dir $@)
	$(CXX) $(ALLFLAGS) $^ -o $@ $(LDFLAGS) $(SYS_LIBS)

fuzz-replay: $(FUZZ_REPLAYS)
	@for t in $(FUZZ_TARGETS); do $(FUZZ_DIR)/replay/$$t $$t fuzz/corpus/$$t || exit 1; done

$(FUZZ_DIR)/make_seeds: $(BUILD)/obj/fuzz/make_seeds.o $(FWD_LIBS)
	@mkdir -p $(dir $@)
	$(CXX) $(ALLFLAGS) $^ -o $@ $(LDFLAGS) $(SYS_LIBS)

fuzz-seeds: $(FUZZ_DIR)/make_seeds
	$< fuzz/corpus

# ---------------------------------------------------------------- libFuzzer (clang)
$(FUZZ_STAMP):
	@mkdir -p $(FUZZ_DIR)
	$(call apt_ensure,$(FUZZ_DEB_DEPS))
	@touch $@

# The shared sources are compiled again with clang (libshared.a is g++ code
# without coverage instrumentation). Our own warnings are errors for the fuzz
# targets; for shared/ they are g++'s job, so a clang-only warning there does
# not stop a fuzzing run.
$(FUZZ_CC_DIR)/obj/%.o: %.cc | $(FUZZ_STAMP)
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) $(CPPFLAGS) $(FUZZ_FLAGS) $(filter-out -Werror,$(WARN)) -fsanitize=fuzzer-no-link -c $< -o $@
$(FUZZ_CC_DIR)/obj/fuzz/%.o: fuzz/%.cc | $(FUZZ_STAMP)
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) $(CPPFLAGS) $(FUZZ_FLAGS) $(WARN) -fsanitize=fuzzer-no-link $(FUZZ_NOCMP_$*) -c $< -o $@
# Every layer but tls (no fuzz target reaches OpenSSL), and FUZZ_DAEMON_SRC.
FUZZ_LIB_SRC := $(filter-out shared/tls/%,$(SHARED_SRC)) $(FUZZ_DAEMON_SRC)
$(FUZZ_CC_DIR)/libshared.a: $(patsubst %.cc,$(FUZZ_CC_DIR)/obj/%.o,$(FUZZ_LIB_SRC))
	@rm -f $@; ar rcs $@ $^
$(FUZZ_CC_DIR)/bin/%: $(FUZZ_CC_DIR)/obj/fuzz/%.o $(FUZZ_CC_DIR)/libshared.a
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) $(FUZZ_FLAGS) -fsanitize=fuzzer $^ -o $@ $(SYS_LIBS)

fuzz: $(patsubst %,fuzz-run-%,$(FUZZ_TARGETS))
	@echo "fuzz summary ($(FUZZ_HOWLONG) per target; table: docs/reliability.md, Fuzzing):"
	@for t in $(FUZZ_TARGETS); do cat $(FUZZ_DIR)/$$t.summary; done

# Run, then merge the scratch directory into the committed corpus. The first
# directory given to libFuzzer is where it writes new inputs: the scratch one.
# Then one pass over the merged corpus (-runs=0) through the ASan+UBSan build
# (make fuzz-asan-check: whichever build fuzzed, every kept input runs under
# ASan, and the table's coverage is that build's count, so rows stay
# comparable; UBSan alone instruments ~1 % fewer edges), and the
# target's row of the table. A crash still writes the row (crashes 1), then
# fails with the reproducer's name.
$(FUZZ_RUN_RULES): fuzz-run-%: $(FUZZ_CC_DIR)/bin/%
	@rm -rf $(FUZZ_DIR)/new/$* $(FUZZ_DIR)/$*.asan.log && \
	  mkdir -p $(FUZZ_DIR)/new/$* $(FUZZ_DIR)/artifacts fuzz/corpus/$*
	@echo "fuzzing $* $(FUZZ_HOWLONG) (log: $(FUZZ_DIR)/$*.log)"
	@start=$$(cut -d' ' -f1 /proc/uptime); \
	$(FUZZ_TIMEOUT) $< $(FUZZ_ARGS) -max_len=$(FUZZ_MAXLEN_$*) $(FUZZ_DICT_$*) $(FUZZ_BOUND) \
	  -artifact_prefix=$(FUZZ_DIR)/artifacts/$*- $(FUZZ_DIR)/new/$* fuzz/corpus/$* \
	  >$(FUZZ_DIR)/$*.log 2>&1; rc=$$?; \
	if [ $$rc -eq 124 ]; then rc=0; fi; \
	secs=$$(echo "$$(cut -d' ' -f1 /proc/uptime) $$start" | awk '{printf "%.0f", $$1 - $$2}'); \
	if [ $$rc -ne 0 ]; then \
	  tail -n 60 $(FUZZ_DIR)/$*.log; \
	  $(PYTHON) fuzz/fuzz_table.py --target $* --log $(FUZZ_DIR)/$*.log \
	    --corpus fuzz/corpus/$* --crashes 1 --seconds $$secs --order "$(FUZZ_ALL_TARGETS)" \
	    --command "$(call FUZZ_CMD,$*)" --summary $(FUZZ_DIR)/$*.summary; \
	  echo "$*: fuzzer failed (exit $$rc); reproducer: $$(ls $(FUZZ_DIR)/artifacts/$*-* 2>/dev/null)" >&2; \
	  exit $$rc; \
	fi; \
	$< -merge=1 -max_len=$(FUZZ_MAXLEN_$*) fuzz/corpus/$* $(FUZZ_DIR)/new/$* \
	  >$(FUZZ_DIR)/$*.merge.log 2>&1 || { tail -n 20 $(FUZZ_DIR)/$*.merge.log; exit 1; }; \
	$(MAKE) --no-print-directory fuzz-asan-check FUZZ_TARGETS=$* FUZZ_SANITIZER=address || exit 1; \
	$(PYTHON) fuzz/fuzz_table.py --target $* --log $(FUZZ_DIR)/$*.log \
	  --cov-log $(FUZZ_DIR)/$*.asan.log --corpus fuzz/corpus/$* --crashes 0 --seconds $$secs \
	  --order "$(FUZZ_ALL_TARGETS)" --command "$(call FUZZ_CMD,$*)" \
	  --summary $(FUZZ_DIR)/$*.summary

# Every committed input of FUZZ_TARGETS through the ASan+UBSan libFuzzer build
# (-runs=0): what a FUZZ_SANITIZER=undefined run kept, checked under ASan. Every
# fuzz-run-<target> ends with it; its log is the table's coverage.
.PHONY: fuzz-asan-check
fuzz-asan-check:
	@$(MAKE) --no-print-directory FUZZ_SANITIZER=address $(patsubst %,$(FUZZ_DIR)/bin/%,$(FUZZ_TARGETS))
	@$(foreach t,$(FUZZ_TARGETS),$(FUZZ_DIR)/bin/$(t) -runs=0 -rss_limit_mb=2560 \
	  -max_len=$(FUZZ_MAXLEN_$(t)) fuzz/corpus/$(t) >$(FUZZ_DIR)/$(t).asan.log 2>&1 || \
	  { tail -n 30 $(FUZZ_DIR)/$(t).asan.log; echo "$(t): the corpus fails under ASan" >&2; exit 1; }; \
	  echo "$(t): $$(find fuzz/corpus/$(t) -type f | wc -l) inputs pass under ASan+UBSan";)

# Keeps hand-made seeds and regressions by name; everything else is replaced
# by the smallest set with the same coverage that libFuzzer's merge chooses
# (merge names its outputs by SHA-1, so kept files are recognised by hash).
FUZZ_MINS := $(patsubst %,fuzz-min-%,$(FUZZ_ALL_TARGETS))
.PHONY: $(FUZZ_MINS)
fuzz-minimize: $(patsubst %,fuzz-min-%,$(FUZZ_TARGETS))
$(FUZZ_MINS): fuzz-min-%: $(FUZZ_CC_DIR)/bin/%
	@rm -rf $(FUZZ_DIR)/min/$* $(FUZZ_DIR)/keep/$* && mkdir -p $(FUZZ_DIR)/min/$* $(FUZZ_DIR)/keep/$*
	@find fuzz/corpus/$* -type f \( -name 'seed-*' -o -name 'regress-*' \) -exec cp {} $(FUZZ_DIR)/keep/$*/ \;
	@$< -merge=1 -max_len=$(FUZZ_MAXLEN_$*) $(FUZZ_DIR)/min/$* $(FUZZ_DIR)/keep/$* fuzz/corpus/$* \
	  >$(FUZZ_DIR)/$*.min.log 2>&1 || { tail -n 20 $(FUZZ_DIR)/$*.min.log; exit 1; }
	@keep=$$(for k in $(FUZZ_DIR)/keep/$*/*; do \
	  [ -e "$$k" ] && sha1sum "$$k" | cut -c1-40; done); \
	find fuzz/corpus/$* -type f ! -name 'seed-*' ! -name 'regress-*' -delete; \
	for f in $(FUZZ_DIR)/min/$*/*; do \
	  [ -e "$$f" ] || continue; \
	  case " $$(echo $$keep) " in *" $$(basename $$f) "*) ;; *) cp "$$f" fuzz/corpus/$*/;; esac; \
	done
	@echo "$*: $$(find fuzz/corpus/$* -type f | wc -l) files, $$(du -sb fuzz/corpus/$* | cut -f1) bytes"

-include $(shell find $(FUZZ_CC_DIR)/obj -name '*.d' 2>/dev/null)
