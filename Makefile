# tierq — build, test, demo, bench.  `make help` lists the targets.
#
# Everything is built into $(BUILD) (default build/); the sanitizer build goes to build-asan/.
# Warnings are errors when CI is set (CI=true, as .ci/run does) or WERROR=1.

CC       ?= cc
BUILD    ?= build
OPT      ?= -O2 -g
WARN     := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wformat=2 \
            -Wstrict-prototypes -Wmissing-prototypes -Wvla -Wwrite-strings
ifneq ($(strip $(CI)$(WERROR)),)
WARN     += -Werror
endif
SAN      ?=
PG_INC   := $(shell pg_config --includedir 2>/dev/null || echo /usr/include/postgresql)
CPPFLAGS += -Icommon -Ischeduler -Iworker -Icli -I$(PG_INC) -I$(BUILD)/gen
CFLAGS   += $(OPT) $(WARN) $(SAN) -pthread -MMD -MP
LDLIBS   += -lcurl -lzstd -lpq -lpthread -lm
LDFLAGS  += $(SAN) -pthread

VERSION  := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
CPPFLAGS += -DTQ_VERSION='"$(VERSION)"'

COMMON_SRC := $(wildcard common/*.c)
SCHED_SRC  := $(wildcard scheduler/*.c)
CLI_SRC    := $(filter-out cli/main.c,$(wildcard cli/*.c))
WORKER_SRC := $(wildcard worker/*.c)
SIM_SRC    := $(wildcard tests/sim/*.c)
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
INTEG_SRC  := $(wildcard tests/integration/test_*.c)
MIGRATIONS := $(sort $(wildcard sql/[0-9]*.sql))

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
LIB_OBJ   := $(call obj,$(COMMON_SRC) $(SCHED_SRC) $(WORKER_SRC) $(CLI_SRC)) $(BUILD)/obj/gen/sql_migrations.o
COMMON_OBJ := $(call obj,$(COMMON_SRC))
UNIT_BIN  := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
INTEG_BIN := $(patsubst tests/integration/%.c,$(BUILD)/tests/%,$(INTEG_SRC))

.PHONY: all deps test unit demo bench clean help asan
SIM_BIN   := $(if $(SIM_SRC),$(BUILD)/tierq-sim,)
all: $(BUILD)/tierq $(SIM_BIN) $(UNIT_BIN) $(INTEG_BIN)

help:
	@echo "make          build tierq, tierq-sim and the tests into $(BUILD)/"
	@echo "make deps     install missing Debian packages (as root) or print the apt-get line"
	@echo "make test     deps, build, private PostgreSQL, unit + integration + sanitizer tests"
	@echo "make demo     deps, build, private PostgreSQL + simulator, demo workload, cost report"
	@echo "make bench    throughput / concurrency benchmarks (prints figures)"
	@echo "make fuzz     libFuzzer harnesses (clang), FUZZ_SECONDS each (default 60); tests/fuzz/README.md"

deps:
	@sh tests/deps.sh

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

# SQL statements kept whole as one literal (GCC and Clang accept any length; C99 only promises 4095).
$(BUILD)/obj/scheduler/queue.o: CFLAGS += -Wno-overlength-strings

# Migrations are embedded in the binary: sql/NNN_name.sql become C string constants.
$(BUILD)/gen/sql_migrations.c: $(MIGRATIONS) sql/embed.sh
	@mkdir -p $(dir $@)
	sh sql/embed.sh $(MIGRATIONS) > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/gen/sql_migrations.o: $(BUILD)/gen/sql_migrations.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -Wno-overlength-strings -c $< -o $@

$(BUILD)/tierq: $(BUILD)/obj/cli/main.o $(LIB_OBJ)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tierq-sim: $(call obj,$(SIM_SRC)) $(COMMON_OBJ)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/obj/tests/integration/%.o $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

unit: $(UNIT_BIN)
	@for t in $(UNIT_BIN); do $$t || exit 1; done

asan:
	$(MAKE) BUILD=build-asan OPT="-O1 -g -fno-omit-frame-pointer" \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" unit-bins build-asan/tierq

unit-bins: $(UNIT_BIN)

test: deps
	$(MAKE) all
	$(MAKE) asan
	sh tests/run.sh

demo: deps
	$(MAKE) all
	sh tests/demo.sh

bench: deps
	$(MAKE) all
	sh tests/bench.sh

clean:
	rm -rf build build-asan build-fuzz

# The conformance suite (tests/conformance/): its fixture server and schema checker.
-include tests/conformance/conformance.mk
# Fuzzing (tests/fuzz/): libFuzzer harnesses (make fuzz) and their corpora replayed by make test.
-include tests/fuzz/fuzz.mk

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
