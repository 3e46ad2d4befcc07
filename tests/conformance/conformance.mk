# tests/conformance/: the fixture server and the request-schema checker (see tests/conformance/README.md).
# Included by the top-level Makefile; uses its BUILD, CC, flags, COMMON_OBJ and LDLIBS.

CONF_BIN := $(BUILD)/tierq-fixture $(BUILD)/tierq-schema-check

all: $(CONF_BIN)

$(BUILD)/tierq-fixture: $(BUILD)/obj/tests/conformance/fixture_server.o $(COMMON_OBJ)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tierq-schema-check: $(BUILD)/obj/tests/conformance/schema_check.o $(COMMON_OBJ)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

.PHONY: conformance
conformance: $(CONF_BIN) $(BUILD)/tierq-sim
	BUILD=$(BUILD) sh tests/conformance/test_schema_check.sh
	BUILD=$(BUILD) sh tests/conformance/test_fixture_server.sh
