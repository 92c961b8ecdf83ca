# sluice — one GNU Makefile.
#
#   make            build build/sluice (optimised)
#   make test       unit + integration tests under ASan/UBSan, threaded unit tests under TSan
#   make demo       install deps if missing, build, run the demo and exit
#   make run        like demo, but keep running until Ctrl-C
#   make bench      benchmarks (not part of make test)
#   make fuzz       libFuzzer drivers of test/fuzz/, FUZZ_SECONDS each (not part of make test)
#   make tsan       the multi-threaded unit tests under ThreadSanitizer (build/tsan/)
#   make layers     no two files of proxy/ call each other both ways (part of make unit)
#   make image      the runtime image (deploy/Dockerfile) with podman or docker, if one works
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
CPPFLAGS    += -Iinclude -Iproxy -I$(LLHTTP_INC) -D_GNU_SOURCE
OPTFLAGS    ?= -O2 -g
LIBS        := -lnghttp2 -lev -lssl -lcrypto -lyaml -lhiredis -lpthread -lm

SAN_FLAGS   := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
               -fno-sanitize-recover=undefined

# Sources are found in every subfolder (proxy/core, proxy/front, ...).
SRC_PROXY    := $(sort $(shell find proxy -name '*.c'))
SRC_POLICIES := $(sort $(shell find policies -name '*.c'))
SRC_LLHTTP   := $(LLHTTP_DIR)/llhttp.c $(LLHTTP_DIR)/api.c $(LLHTTP_DIR)/http.c
MAIN_SRC     := proxy/main.c
LIB_SRC      := $(filter-out $(MAIN_SRC),$(SRC_PROXY)) $(SRC_POLICIES)
UNIT_TESTS   := $(sort $(wildcard test/unit/test_*.c))

# The commit the binary is built from (`sluice --version`,
# sluice_build_info): "-dirty" when the tree has changes, "unknown" outside
# a git checkout. Only build_info.c sees it; the stamp file changes (and
# that one file is rebuilt) only when the commit does.
SLUICE_COMMIT := $(shell c=$$(git rev-parse --short=12 HEAD 2>/dev/null) && \
                   { git diff --quiet HEAD -- 2>/dev/null || c="$$c-dirty"; echo "$$c"; } \
                   || echo unknown)
BUILD_INFO_OBJS := $(foreach d,build build/san build/tsan build/fuzz,$(d)/obj/proxy/admin/build_info.o)
$(BUILD_INFO_OBJS): CPPFLAGS += -DSLUICE_COMMIT='"$(SLUICE_COMMIT)"'
$(BUILD_INFO_OBJS): build/commit.stamp
build/commit.stamp: FORCE
	@mkdir -p build
	@echo '$(SLUICE_COMMIT)' | cmp -s - $@ || echo '$(SLUICE_COMMIT)' > $@
.PHONY: FORCE
FORCE:

# Two build flavours share one rule set: build/ (release) and build/san/
# (sanitizers, used by make test).
define objs
$(patsubst %.c,$(1)/obj/%.o,$(LIB_SRC)) \
$(patsubst $(LLHTTP_DIR)/%.c,$(1)/obj/llhttp/%.o,$(SRC_LLHTTP))
endef

REL_OBJS := $(call objs,build)
SAN_OBJS := $(call objs,build/san)

.PHONY: all test unit integration demo run bench clean deps check fuzz tsan layers image tools
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

# The link seam: test_link is linked with every object of the library
# (--whole-archive) and without main.o, so an object that needs a symbol
# only the command line defines (or a symbol defined twice) fails here.
build/san/test/test_link: test/unit/test_link.c build/san/libsluice.a
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(SAN_FLAGS) $(CPPFLAGS) -DSLUICE_TESTING -Itest/unit -o $@ $< \
		-Wl,--whole-archive build/san/libsluice.a -Wl,--no-whole-archive -lcmocka $(LIBS)

UNIT_BINS := $(patsubst test/unit/%.c,build/san/test/%,$(UNIT_TESTS))

# Layering: no two files of proxy/ call each other both ways (nm of the
# objects; scripts/layers-allow.txt lists the temporary exceptions).
layers: build/san/libsluice.a build/san/obj/proxy/main.o
	$(PYTHON) scripts/check_layers.py --objdir build/san/obj/proxy --allow scripts/layers-allow.txt

unit: $(UNIT_BINS) layers
	@set -e; for t in $(UNIT_BINS); do \
		echo "== $$t"; ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 $$t; \
	done

# ThreadSanitizer: the unit tests whose code runs on several threads at
# once (shared limiter tables, breakers, concurrency counters, the metrics
# registry and its per-thread caches, the admin thread), built with the
# library instrumented into build/tsan/ and run. Any race report fails.
TSAN_FLAGS  := -O1 -g -fno-omit-frame-pointer -fsanitize=thread
TSAN_TESTS  := test_ratelimit test_breaker test_concurrency test_conc_table test_stats test_metrics \
               test_policy_state test_admin test_gen test_freelist test_upstream test_horizon
TSAN_BINS   := $(addprefix build/tsan/test/,$(TSAN_TESTS))
TSAN_OBJS   := $(call objs,build/tsan)

build/tsan/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(TSAN_FLAGS) $(CPPFLAGS) -DSLUICE_TESTING -MMD -MP -c $< -o $@

build/tsan/obj/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(TSAN_FLAGS) -DLLHTTP_STRICT_MODE=1 -I$(LLHTTP_INC) -c $< -o $@

build/tsan/libsluice.a: $(TSAN_OBJS)
	@rm -f $@
	ar rcs $@ $^

build/tsan/test/%: test/unit/%.c build/tsan/libsluice.a
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(TSAN_FLAGS) $(CPPFLAGS) -DSLUICE_TESTING -Itest/unit -o $@ $< \
		build/tsan/libsluice.a -lcmocka $(LIBS)

tsan: $(TSAN_BINS)
	@set -e; for t in $(TSAN_BINS); do \
		echo "== $$t"; TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1" $$t; \
	done

# The fleet simulator (test/tools/fleetsim/, README.md "Fleet simulator"):
# its own program on libev and llhttp (the objects sluice uses), one module
# per concern; standin.c in the same folder is a program of its own.
FLEETSIM_SRC  := $(filter-out test/tools/fleetsim/standin.c,$(sort $(wildcard test/tools/fleetsim/*.c)))
FLEETSIM_OBJS := $(patsubst %.c,build/obj/%.o,$(FLEETSIM_SRC)) \
                 $(patsubst $(LLHTTP_DIR)/%.c,build/obj/llhttp/%.o,$(SRC_LLHTTP))

build/fleetsim: $(FLEETSIM_OBJS)
	$(CC) $(OPTFLAGS) -o $@ $^ -lev -lnghttp2 -lssl -lcrypto -lm

# The same under ASan/UBSan: what make integration runs test_fleetsim.py with.
build/san/fleetsim: $(subst build/obj/,build/san/obj/,$(FLEETSIM_OBJS))
	$(CC) $(SAN_FLAGS) -o $@ $^ -lev -lnghttp2 -lssl -lcrypto -lm

tools: build/fleetsim build/standin

integration: build/san/sluice build/sluice build/bench/idle_client tools build/san/fleetsim
	SLUICE_BIN=$(CURDIR)/build/san/sluice FLEETSIM_BIN=$(CURDIR)/build/san/fleetsim $(PYTHON) -m pytest -q -rs -p no:cacheprovider \
		test/integration $(PYTEST_ARGS)

test: deps
	$(MAKE) unit
	$(MAKE) tsan
	$(MAKE) integration

check: build/sluice
	./build/sluice check -c deploy/examples/sluice.yaml

demo: deps
	$(MAKE) build/sluice tools
	$(PYTHON) deploy/demo.py --sluice ./build/sluice

run: deps
	$(MAKE) build/sluice tools
	$(PYTHON) deploy/demo.py --sluice ./build/sluice --forever

# The runtime image: FROM scratch, filled with build/sluice and what it
# links (scripts/image-rootfs.sh); no base image is pulled.
image: build/sluice
	./scripts/image.sh build/sluice $(IMAGE)

bench: build/sluice
	./scripts/deps.sh --bench
	$(MAKE) -C . build/bench/bench_policies build/bench/bench_breaker build/bench/idle_client
	./build/bench/bench_policies
	./build/bench/bench_breaker
	$(PYTHON) test/bench/proxy_bench.py --sluice ./build/sluice --out build/bench/results.json $(BENCH_ARGS)
	$(PYTHON) test/bench/storm_bench.py --sluice ./build/sluice --out build/bench/storm.json $(STORM_ARGS)
	$(PYTHON) test/bench/global_bench.py --sluice ./build/sluice --out build/bench/global.json $(GLOBAL_ARGS)
	$(PYTHON) test/bench/idle_bench.py --sluice ./build/sluice --out build/bench/idle.json $(IDLE_ARGS)
	$(MAKE) -C . build/bench/tls_footprint
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
	  -keyout build/bench/footprint.key -out build/bench/footprint.crt 2>/dev/null
	./build/bench/tls_footprint --cert build/bench/footprint.crt --key build/bench/footprint.key
	$(MAKE) -C . tools
	$(PYTHON) test/bench/herd_bench.py --sluice ./build/sluice --out build/bench/herd.json $(HERD_ARGS)

# The idle-connection client (idle_bench.py, test_idle.py) links no sluice code.
build/bench/idle_client: test/bench/idle_client.c
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(OPTFLAGS) -D_GNU_SOURCE -o $@ $< -lev -lssl -lcrypto

build/bench/%: test/bench/%.c build/libsluice.a
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(OPTFLAGS) $(CPPFLAGS) -o $@ $< build/libsluice.a $(LIBS)

# Fuzzing: one libFuzzer binary per test/fuzz/fuzz_*.c, built with clang
# into build/fuzz/ (library and llhttp instrumented for coverage), each run
# for FUZZ_SECONDS on its seed corpus. New inputs go to build/fuzz/corpus/,
# crashes to build/fuzz/artifacts/; test/fuzz/corpus/ is only read.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 30
FUZZ_ARGS    ?=
FUZZ_FLAGS   := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
                -fno-sanitize-recover=undefined
FUZZ_SRCS    := $(sort $(wildcard test/fuzz/fuzz_*.c))
FUZZ_BINS    := $(patsubst test/fuzz/%.c,build/fuzz/%,$(FUZZ_SRCS))
FUZZ_OBJS    := $(call objs,build/fuzz)

build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CSTD) $(WARN) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link $(CPPFLAGS) -DSLUICE_TESTING \
		-MMD -MP -c $< -o $@

build/fuzz/obj/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CSTD) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -DLLHTTP_STRICT_MODE=1 \
		-I$(LLHTTP_INC) -c $< -o $@

build/fuzz/libsluice.a: $(FUZZ_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_BINS): build/fuzz/%: test/fuzz/%.c build/fuzz/libsluice.a
	$(FUZZ_CC) $(CSTD) $(WARN) $(FUZZ_FLAGS) -fsanitize=fuzzer $(CPPFLAGS) -DSLUICE_TESTING \
		-MMD -MP -o $@ $< build/fuzz/libsluice.a $(LIBS)

fuzz: $(FUZZ_BINS)
	@set -e; mkdir -p build/fuzz/artifacts; for b in $(FUZZ_BINS); do \
		n=$$(basename $$b); mkdir -p build/fuzz/corpus/$$n; echo "== $$n ($(FUZZ_SECONDS) s)"; \
		$$b -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			-artifact_prefix=build/fuzz/artifacts/$$n- $(FUZZ_ARGS) \
			build/fuzz/corpus/$$n test/fuzz/corpus/$${n#fuzz_}; \
	done

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)

# The stand-in identity API of the storm demo (test/tools/fleetsim/standin.c):
# links no sluice code.
build/standin: test/tools/fleetsim/standin.c
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(OPTFLAGS) -D_GNU_SOURCE -o $@ $< -lev -lssl -lcrypto -lm
