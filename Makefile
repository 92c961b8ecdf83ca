# sluice — one GNU Makefile.
#
#   make            build build/sluice (optimised)
#   make test       unit + integration tests under ASan/UBSan
#   make demo       install deps if missing, build, run the demo and exit
#   make run        like demo, but keep running until Ctrl-C
#   make bench      benchmarks (not part of make test)
#   make clean
#
# llhttp is compiled from Debian's node-llhttp sources in place
# (/usr/share/llhttp); nothing is copied into the repository.

LLHTTP_DIR  ?= /usr/share/llhttp
LLHTTP_INC  ?= /usr/share/include/llhttp
PYTHON      ?= /usr/bin/python3

CC          ?= cc
CSTD        := -std=gnu11
WARN        := -Wall -Wextra -Wshadow -Wno-unused-parameter -Wmissing-prototypes \
               -Wstrict-prototypes -Wformat=2 -Wpointer-arith
CPPFLAGS    += -Iinclude -I$(LLHTTP_INC) -D_GNU_SOURCE
OPTFLAGS    ?= -O2 -g
LIBS        := -lnghttp2 -lev -lssl -lcrypto -lyaml -lpthread -lm

SAN_FLAGS   := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
               -fno-sanitize-recover=undefined

SRC_PROXY    := $(sort $(wildcard proxy/*.c))
SRC_POLICIES := $(sort $(wildcard policies/*.c))
SRC_LLHTTP   := $(LLHTTP_DIR)/llhttp.c $(LLHTTP_DIR)/api.c $(LLHTTP_DIR)/http.c
MAIN_SRC     := proxy/main.c
LIB_SRC      := $(filter-out $(MAIN_SRC),$(SRC_PROXY)) $(SRC_POLICIES)
UNIT_TESTS   := $(sort $(wildcard test/unit/test_*.c))

# Two build flavours share one rule set: build/ (release) and build/san/
# (sanitizers, used by make test).
define objs
$(patsubst %.c,$(1)/obj/%.o,$(LIB_SRC)) \
$(patsubst $(LLHTTP_DIR)/%.c,$(1)/obj/llhttp/%.o,$(SRC_LLHTTP))
endef

REL_OBJS := $(call objs,build)
SAN_OBJS := $(call objs,build/san)

.PHONY: all test unit integration demo run bench clean deps check fuzz
all: build/sluice

deps:
	@./scripts/deps.sh

build/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(OPTFLAGS) $(CPPFLAGS) -MMD -MP -c $< -o $@

build/obj/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) -O2 -g -DLLHTTP_STRICT_MODE=1 -I$(LLHTTP_INC) -c $< -o $@

build/san/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(SAN_FLAGS) $(CPPFLAGS) -DSLUICE_TESTING -MMD -MP -c $< -o $@

build/san/obj/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(SAN_FLAGS) -DLLHTTP_STRICT_MODE=1 -I$(LLHTTP_INC) -c $< -o $@

build/libsluice.a: $(REL_OBJS)
	@rm -f $@
	ar rcs $@ $^

build/san/libsluice.a: $(SAN_OBJS)
	@rm -f $@
	ar rcs $@ $^

build/sluice: build/obj/proxy/main.o build/libsluice.a
	$(CC) $(OPTFLAGS) -o $@ $^ $(LIBS)

build/san/sluice: build/san/obj/proxy/main.o build/san/libsluice.a
	$(CC) $(SAN_FLAGS) -o $@ $^ $(LIBS)

# Unit tests: one binary per test/unit/test_*.c, linked against the
# sanitizer library; a test may #include a .c file to reach statics.
build/san/test/%: test/unit/%.c build/san/libsluice.a
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(SAN_FLAGS) $(CPPFLAGS) -DSLUICE_TESTING -Itest/unit -o $@ $< \
		build/san/libsluice.a -lcmocka $(LIBS)

UNIT_BINS := $(patsubst test/unit/%.c,build/san/test/%,$(UNIT_TESTS))

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do \
		echo "== $$t"; ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 $$t; \
	done

integration: build/san/sluice build/sluice
	SLUICE_BIN=$(CURDIR)/build/san/sluice $(PYTHON) -m pytest -q -p no:cacheprovider \
		test/integration $(PYTEST_ARGS)

test: deps
	$(MAKE) unit
	$(MAKE) integration

check: build/sluice
	./build/sluice check -c deploy/examples/sluice.yaml

demo: deps
	$(MAKE) build/sluice
	$(PYTHON) deploy/demo.py --sluice ./build/sluice

run: deps
	$(MAKE) build/sluice
	$(PYTHON) deploy/demo.py --sluice ./build/sluice --forever

bench: build/sluice
	./scripts/bench-deps.sh
	$(MAKE) -C . build/bench/bench_policies
	./build/bench/bench_policies
	$(PYTHON) test/bench/proxy_bench.py --sluice ./build/sluice --out build/bench/results.json $(BENCH_ARGS)

build/bench/%: test/bench/%.c build/libsluice.a
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(OPTFLAGS) $(CPPFLAGS) -o $@ $< build/libsluice.a $(LIBS)

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
