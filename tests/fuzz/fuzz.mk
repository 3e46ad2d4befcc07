# tests/fuzz/: libFuzzer harnesses over the parsers of outside input (see tests/fuzz/README.md).
# Included by the top-level Makefile; uses its BUILD, CC, CPPFLAGS, WARN, CFLAGS and LDLIBS.
#
#   make fuzz                  build every harness with clang + libFuzzer + ASan/UBSan into
#                              $(BUILD)-fuzz/ and run each for FUZZ_SECONDS (default 60) on its corpus
#   make fuzz-run-json         one harness (FUZZ_SECONDS, FUZZ_FLAGS apply)
#   make fuzz-build            only build them;  make fuzz-clean  removes $(BUILD)-fuzz/
#   make fuzz-replay           the replay binaries $(BUILD)/tests/fuzz_replay_<name> (part of make all,
#                              and of make asan); tests/fuzz/test_replay.sh runs them in make test

FUZZ_NAMES   := response batch json check template config headers
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_FLAGS   ?=
# Open findings whose contract checks to skip while fuzzing past them (see tests/fuzz/README.md).
FUZZ_KNOWN   ?=
FUZZ_BUILD   := $(BUILD)-fuzz
# What the harnesses reach, and all it needs: no database, no sockets, no generated sources. The
# harnesses link an archive of these, so each takes only the objects it calls into.
FUZZ_LIB_SRC := common/buf.c common/err.c common/utf8.c common/json.c common/template.c common/hash.c common/sha256.c \
                common/cost.c common/config.c worker/openai.c worker/prompt.c worker/batch.c \
                worker/check.c worker/ledger.c

# ---- libFuzzer build (clang; the normal build is untouched) ----------------------------------------
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS  := -O1 -g $(FUZZ_SAN) -pthread -MMD -MP
# The project's own files are held to warnings-as-errors by the gcc build; under clang they only warn
# (clang's -Wformat=2 also flags the va_list formatters in common/buf.c, which gcc accepts).
FUZZ_LIB_WARN := $(filter-out -Werror,$(WARN)) -Wno-format-nonliteral
FUZZ_OBJ     := $(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,$(FUZZ_LIB_SRC))
FUZZ_BIN     := $(patsubst %,$(FUZZ_BUILD)/fuzz_%,$(FUZZ_NAMES))
FUZZ_RUN     := $(patsubst %,fuzz-run-%,$(FUZZ_NAMES))

.PHONY: fuzz fuzz-build fuzz-deps fuzz-replay fuzz-clean $(FUZZ_RUN)

# The project's sources are instrumented for coverage (fuzzer-no-link); only a harness's link step
# brings in libFuzzer's main.
$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_LIB_WARN) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

# The harnesses themselves: the project's flags, warnings as errors under CI like every test.
$(FUZZ_BUILD)/obj/tests/fuzz/%.o: tests/fuzz/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(WARN) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_BUILD)/libtierq.a: $(FUZZ_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(FUZZ_BIN): $(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/obj/tests/fuzz/fuzz_%.o $(FUZZ_BUILD)/libtierq.a
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -pthread $^ $(LDLIBS) -o $@

# clang, and libFuzzer with the sanitizer runtimes (libclang-rt-N-dev: clang only recommends it, so
# an install without recommends leaves it out). Not needed for make test.
fuzz-deps:
	@sh tests/deps.sh clang
	@v=$$(clang --version | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -n 1); \
	    sh tests/deps.sh clang "libclang-rt-$$v-dev"

fuzz-build: fuzz-deps $(FUZZ_BIN)

$(FUZZ_OBJ) $(FUZZ_BIN): | fuzz-deps

# Each harness runs on a work corpus in $(FUZZ_BUILD)/corpus/<name> (where libFuzzer adds what it
# finds) seeded from the committed tests/fuzz/corpus/<name>; a crash, leak or UB stops it and leaves
# the input in $(FUZZ_BUILD)/artifacts/<name>/. The log is $(FUZZ_BUILD)/logs/<name>.log.
$(FUZZ_RUN): fuzz-run-%: $(FUZZ_BUILD)/fuzz_%
	@mkdir -p $(FUZZ_BUILD)/corpus/$* $(FUZZ_BUILD)/artifacts/$* $(FUZZ_BUILD)/logs
	@if ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 TIERQ_FUZZ_KNOWN=$(FUZZ_KNOWN) \
	    $< -max_total_time=$(FUZZ_SECONDS) -max_len=8192 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	       -artifact_prefix=$(FUZZ_BUILD)/artifacts/$*/ $(if $(wildcard tests/fuzz/dict/$*.dict),-dict=tests/fuzz/dict/$*.dict) \
	       $(FUZZ_FLAGS) $(FUZZ_BUILD)/corpus/$* tests/fuzz/corpus/$* >$(FUZZ_BUILD)/logs/$*.log 2>&1; then \
	    echo "fuzz $*: ok, $$(sed -n 's/^stat::number_of_executed_units: *//p' $(FUZZ_BUILD)/logs/$*.log) runs in $(FUZZ_SECONDS)s," \
	         "$$(grep -E '^#[0-9]+[[:space:]]+DONE' $(FUZZ_BUILD)/logs/$*.log | sed -E 's/.*(cov: [0-9]+ ft: [0-9]+ corp: [^ ]+).*/\1/')" \
	         "(log $(FUZZ_BUILD)/logs/$*.log)"; \
	else \
	    tail -n 60 $(FUZZ_BUILD)/logs/$*.log; \
	    echo "fuzz $*: FAILED, reproducer in $(FUZZ_BUILD)/artifacts/$*/ (log $(FUZZ_BUILD)/logs/$*.log)"; exit 1; \
	fi

fuzz: $(FUZZ_RUN)

fuzz-clean:
	rm -rf $(FUZZ_BUILD)

# ---- replay binaries (the normal compiler and flags; make test runs them) ---------------------------
FUZZ_REPLAY_BIN := $(patsubst %,$(BUILD)/tests/fuzz_replay_%,$(FUZZ_NAMES))
FUZZ_REPLAY_LIB := $(BUILD)/obj/tests/fuzz/libtierq.a

$(FUZZ_REPLAY_LIB): $(call obj,$(FUZZ_LIB_SRC))
	@rm -f $@
	$(AR) rcs $@ $^

$(FUZZ_REPLAY_BIN): $(BUILD)/tests/fuzz_replay_%: $(BUILD)/obj/tests/fuzz/fuzz_%.o $(BUILD)/obj/tests/fuzz/replay.o \
                    $(FUZZ_REPLAY_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

fuzz-replay: $(FUZZ_REPLAY_BIN)
all: $(FUZZ_REPLAY_BIN)
unit-bins: $(FUZZ_REPLAY_BIN)

-include $(wildcard $(FUZZ_BUILD)/obj/common/*.d $(FUZZ_BUILD)/obj/worker/*.d $(FUZZ_BUILD)/obj/tests/fuzz/*.d)
