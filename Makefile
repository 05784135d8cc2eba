# Parley build. `make` builds the programs; `make run` starts a server on port 5000;
# `make test` runs everything (unit, end-to-end, sanitizers, a short fuzz pass).
.SUFFIXES:

VERSION   := 0.1.0
CC        ?= cc
BUILD     ?= build
PKGS      := libevent libevent_openssl sqlite3 libsodium openssl hiredis
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread
OPT       ?= -O2
CFLAGS    := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -DPARLEY_VERSION='"$(VERSION)"' \
             -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -g $(OPT) -Isrc $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS   += $(EXTRA_LDFLAGS)

COMMON_SRC := $(wildcard src/common/*.c)
SERVER_SRC := $(filter-out src/server/main.c,$(wildcard src/server/*.c))
CLIENT_SRC := $(filter-out src/client/main.c,$(wildcard src/client/*.c))
BENCH_SRC  := $(wildcard src/bench/*.c)
UNIT_SRC   := $(wildcard tests/unit/test_*.c)

obj = $(patsubst src/%.c,$(BUILD)/obj/%.o,$(1))
COMMON_OBJ := $(call obj,$(COMMON_SRC))
SERVER_OBJ := $(call obj,$(SERVER_SRC))
CLIENT_OBJ := $(call obj,$(CLIENT_SRC))
UNIT_BIN   := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

PROGS := $(BUILD)/parleyd $(BUILD)/parley $(if $(BENCH_SRC),$(BUILD)/parley-bench) \
         $(BUILD)/parley-p2p-bench

.PHONY: all deps run test unit unit-bins e2e asan-test fuzz-smoke fuzz format lint clean bench bench-tail \
        bench-smoke soak bench-p2p install uninstall
all: $(PROGS)

$(BUILD)/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/parleyd: $(BUILD)/obj/server/main.o $(SERVER_OBJ) $(COMMON_OBJ)
	$(CC) $(LDFLAGS) $^ -o $@ $(PKG_LIBS)

$(BUILD)/parley: $(BUILD)/obj/client/main.o $(CLIENT_OBJ) $(COMMON_OBJ)
	$(CC) $(LDFLAGS) $^ -o $@ $(PKG_LIBS) -lreadline

$(BUILD)/parley-bench: $(call obj,$(BENCH_SRC)) $(COMMON_OBJ)
	$(CC) $(LDFLAGS) $^ -o $@ $(PKG_LIBS)

# The cost of end-to-end encryption on a P2P session (docs/PERFORMANCE.md §10).
$(BUILD)/parley-p2p-bench: bench/p2p_bench.c $(call obj,src/client/p2p_channel.c) $(COMMON_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(PKG_LIBS)

# Unit tests: each links the common modules plus the modules it names below. Those that
# include a module's source whole are rebuilt when it changes (-MMD, build/tests/*.d).
$(BUILD)/tests/test_%: tests/unit/test_%.c $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP $(LDFLAGS) $(filter tests/%.c %.o,$^) -o $@ $(PKG_LIBS) -lreadline -lcmocka
$(BUILD)/tests/test_store: $(call obj,src/server/store.c src/server/store_local.c src/server/qlog.c src/server/auth.c \
                           src/server/store_redis.c src/server/cluster.c src/server/redis_link.c src/server/redis_event.c \
                           src/server/mqueue.c src/server/log.c src/server/metrics.c)
$(BUILD)/tests/test_qlog: $(call obj,src/server/qlog.c src/server/mqueue.c src/server/log.c)
$(BUILD)/tests/test_mqueue: $(call obj,src/server/mqueue.c)
$(BUILD)/tests/test_net_uring: $(call obj,src/server/net_uring.c)
$(BUILD)/tests/test_auth: $(call obj,src/server/auth.c)
$(BUILD)/tests/test_worker: $(call obj,src/server/worker.c)
$(BUILD)/tests/test_directory: $(call obj,src/server/directory.c)
$(BUILD)/tests/test_ratelimit: $(call obj,src/server/ratelimit.c)
$(BUILD)/tests/test_config: $(call obj,src/server/config.c src/server/nodeid.c src/server/store.c \
                            src/server/store_redis.c src/server/cluster.c src/server/redis_link.c src/server/redis_event.c \
                            src/server/store_local.c src/server/auth.c src/server/qlog.c src/server/mqueue.c \
                            src/server/log.c src/server/metrics.c)
$(BUILD)/tests/test_nodeid: $(call obj,src/server/nodeid.c)
$(BUILD)/tests/test_pairmap: $(call obj,src/server/pairmap.c)
$(BUILD)/tests/test_peerlimit: $(call obj,src/server/peerlimit.c src/server/pairmap.c)
$(BUILD)/tests/test_log: $(call obj,src/server/log.c)
$(BUILD)/tests/test_scrape: $(call obj,src/bench/scrape.c)
$(BUILD)/tests/test_p2p_channel: $(call obj,src/client/p2p_channel.c)
$(BUILD)/tests/test_client_identity: $(call obj,src/client/identity.c src/client/p2p_channel.c)
$(BUILD)/tests/test_client_p2p: $(call obj,src/client/identity.c src/client/p2p_channel.c)
$(BUILD)/tests/test_client_commands: $(call obj,src/client/identity.c src/client/p2p_channel.c)
$(BUILD)/tests/test_redis_event: $(call obj,src/server/redis_event.c)
$(BUILD)/tests/test_redis_link: $(call obj,src/server/redis_link.c src/server/redis_event.c \
                                src/server/log.c)
$(BUILD)/tests/test_session: $(filter-out $(BUILD)/obj/server/net.o,$(SERVER_OBJ)) \
                             tests/support/net_setup_stub.c

deps:
	@scripts/deps.sh test

# `make install` (PREFIX, DESTDIR as usual): parleyd in sbin, parley in bin, their man pages and
# the systemd unit (README.md, "Installing"); `make uninstall` removes exactly those files.
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
MANDIR  ?= $(PREFIX)/share/man
UNITDIR ?= $(PREFIX)/lib/systemd/system
INSTALLED := $(BINDIR)/parley $(SBINDIR)/parleyd $(MANDIR)/man1/parley.1 \
             $(MANDIR)/man8/parleyd.8 $(UNITDIR)/parleyd.service

# The unit is written with the path of the parleyd it runs.
install: $(BUILD)/parleyd $(BUILD)/parley
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man1 \
	  $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(UNITDIR)
	install -m 755 $(BUILD)/parley $(DESTDIR)$(BINDIR)/parley
	install -m 755 $(BUILD)/parleyd $(DESTDIR)$(SBINDIR)/parleyd
	install -m 644 man/parley.1 $(DESTDIR)$(MANDIR)/man1/parley.1
	install -m 644 man/parleyd.8 $(DESTDIR)$(MANDIR)/man8/parleyd.8
	sed 's|@SBINDIR@|$(SBINDIR)|g' dist/parleyd.service.in > $(DESTDIR)$(UNITDIR)/parleyd.service
	chmod 644 $(DESTDIR)$(UNITDIR)/parleyd.service

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))

# Starts parleyd on port 5000 (plain) and 5001 (TLS, with a key and self-signed certificate made
# in run/parley-data on first start) with the sample credentials, in ./run (its own data
# directory). It listens on the loopback address only, as the sample passwords are public:
# RUN_BIND=0.0.0.0 opens it to other machines. It says how to connect to each port once the
# server has written its port file.
RUN_BIND ?= 127.0.0.1
RUN_PORT ?= 5000
RUN_TLS_PORT ?= 5001
run:
	@scripts/deps.sh build
	@$(MAKE) --no-print-directory all
	@mkdir -p run && cp -n examples/credentials.txt run/ 2>/dev/null || true
	@rm -f run/parleyd.port
	@(for i in $$(seq 100); do \
	    if [ "$$(cat run/parleyd.port 2>/dev/null | wc -l)" = 2 ]; then \
	      echo "parleyd listening on $(RUN_BIND) (data in run/parley-data):"; \
	      echo "  plain on port $(RUN_PORT): $(BUILD)/parley 127.0.0.1 $(RUN_PORT)"; \
	      echo "  TLS on port $(RUN_TLS_PORT): $(BUILD)/parley --pin $$(cd run && $(abspath $(BUILD))/parleyd --tls-fingerprint) 127.0.0.1 $(RUN_TLS_PORT)"; \
	      [ "$(RUN_BIND)" = 127.0.0.1 ] && echo "only this machine can connect; RUN_BIND=0.0.0.0 opens it to others (with the sample passwords)"; \
	      exit 0; \
	    fi; sleep 0.1; done) &
	cd run && exec $(abspath $(BUILD))/parleyd --bind $(RUN_BIND) --port-file parleyd.port --tls-port $(RUN_TLS_PORT) $(RUN_PORT) 60 300

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

# What `make test` compiles, on every core (BUILD_JOBS); the tests themselves run one at a time.
BUILD_JOBS ?= $(shell nproc 2>/dev/null || echo 1)
unit-bins: all $(UNIT_BIN)

# The suites run on one node and on three nodes sharing one Redis (PARLEY_TOPOLOGIES), the
# server's over plain TCP and TLS (PARLEY_TRANSPORTS). The sanitizer pass runs them over plain
# TCP only (the TLS files of the suite still run; TLS is OpenSSL's code more than ours) and the
# client suites on one node only (PARLEY_CLIENT_TOPOLOGIES: they test the client; the server
# suites and the cluster fault tests still run on three nodes) to keep `make test` within its
# time.
E2E_TOPOLOGIES ?= single,cluster
E2E_CLIENT_TOPOLOGIES ?= $(E2E_TOPOLOGIES)
E2E_TRANSPORTS ?= plain,tls
e2e: all
	PARLEY_BUILD=$(abspath $(BUILD)) PARLEY_TOPOLOGIES=$(E2E_TOPOLOGIES) \
	  PARLEY_CLIENT_TOPOLOGIES=$(E2E_CLIENT_TOPOLOGIES) PARLEY_TRANSPORTS=$(E2E_TRANSPORTS) \
	  /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/e2e

# The same unit and end-to-end suites against an ASan/UBSan build.
ASAN_MAKE = $(MAKE) --no-print-directory BUILD=build/asan OPT=-O1 \
	  EXTRA_CFLAGS='-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all' \
	  EXTRA_LDFLAGS='-fsanitize=address,undefined' E2E_TRANSPORTS=plain E2E_CLIENT_TOPOLOGIES=single
asan-test:
	@$(ASAN_MAKE) -j$(BUILD_JOBS) unit-bins
	@$(ASAN_MAKE) unit e2e

test: deps
	@$(MAKE) --no-print-directory -j$(BUILD_JOBS) unit-bins
	@$(MAKE) --no-print-directory unit e2e
	@$(MAKE) --no-print-directory asan-test
	@$(MAKE) --no-print-directory fuzz-smoke
	@$(MAKE) --no-print-directory bench-smoke
	@$(MAKE) --no-print-directory lint-check

# libFuzzer harnesses (clang): `make fuzz FUZZ_SECONDS=600` for a long run; `fuzz-smoke` is the
# short pass inside `make test` (6 s per harness, FUZZ_SMOKE_SECONDS). Crashes are written to
# build/fuzz/ and fail the run.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := frame credentials server p2p qlog
FUZZ_CFLAGS  := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -DPARLEY_VERSION='"$(VERSION)"' \
                -g -O1 -Isrc -I. -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_SERVER_SRC := $(filter-out src/server/net.c,$(SERVER_SRC)) fuzz/net_stub.c \
                   tests/support/net_setup_stub.c
build/fuzz/fuzz_frame: fuzz/fuzz_frame.c $(COMMON_SRC)
build/fuzz/fuzz_credentials: fuzz/fuzz_credentials.c src/server/auth.c $(COMMON_SRC)
build/fuzz/fuzz_server: fuzz/fuzz_server.c $(FUZZ_SERVER_SRC) $(COMMON_SRC)
build/fuzz/fuzz_p2p: fuzz/fuzz_p2p.c src/client/identity.c src/client/p2p_channel.c $(COMMON_SRC)
build/fuzz/fuzz_qlog: fuzz/fuzz_qlog.c src/server/qlog.c src/server/mqueue.c fuzz/log_stub.c \
                      $(COMMON_SRC)
build/fuzz/fuzz_%:
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) $(filter %.c,$^) -o $@ $(PKG_LIBS)

FUZZ_BINS := $(patsubst %,build/fuzz/fuzz_%,$(FUZZ_TARGETS))
fuzz: $(FUZZ_BINS)
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p build/fuzz/corpus-$$t; \
	  echo "== fuzz $$t for $(FUZZ_SECONDS)s"; \
	  build/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -timeout=10 \
	    -artifact_prefix=build/fuzz/$$t- build/fuzz/corpus-$$t fuzz/corpus/$$t 2>build/fuzz/$$t.log \
	    || { tail -40 build/fuzz/$$t.log; exit 1; }; \
	  grep -E '^Done|stat::number_of_executed_units' build/fuzz/$$t.log | tail -1; \
	done

fuzz-smoke:
	@$(MAKE) --no-print-directory -j$(BUILD_JOBS) $(FUZZ_BINS)
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$${FUZZ_SMOKE_SECONDS:-6}

format:
	clang-format -i $$(git ls-files 'bench/*.c' 'src/*.c' 'src/*.h' 'tests/*.c' 'tests/*.h' 'fuzz/*.c' 'fuzz/*.h')

lint:
	@$(MAKE) --no-print-directory lint-check

.PHONY: lint-check lua
lua:
	@scripts/lua2c.sh

lint-check:
	@scripts/lua2c.sh $(BUILD)/cluster_lua.h && cmp -s $(BUILD)/cluster_lua.h src/server/cluster_lua.h \
	  || { echo "src/server/cluster_lua.h is stale: run make lua"; exit 1; }
	@clang-format --dry-run -Werror $$(git ls-files 'bench/*.c' 'src/*.c' 'src/*.h' 'tests/*.c' 'tests/*.h' 'fuzz/*.c' 'fuzz/*.h' 2>/dev/null)
	@cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability --inline-suppr \
	  --suppress=missingIncludeSystem -Isrc src
	@$(MAKE) --no-print-directory lint-unit
	@echo "lint: clean"

# systemd-analyze verify on the unit, pointed at the parleyd just built (it checks that the
# program exists); skipped with a note where systemd is not installed (it is not a test
# dependency: scripts/deps.sh).
.PHONY: lint-unit
lint-unit: $(BUILD)/parleyd
	@mkdir -p $(BUILD)/lint
	@sed 's|@SBINDIR@|$(abspath $(BUILD))|g' dist/parleyd.service.in > $(BUILD)/lint/parleyd.service
	@if command -v systemd-analyze >/dev/null; then \
	  out=$$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no $(BUILD)/lint/parleyd.service 2>&1); \
	  [ -z "$$out" ] || { echo "$$out"; exit 1; }; \
	else echo "lint: systemd-analyze is not installed; parleyd.service not verified"; fi

# The benchmark against Redis and mosquitto (installs them when missing); not a test.
BENCH_ARGS ?= --quick
bench: all
	@scripts/deps.sh bench
	BUILD=$(abspath $(BUILD)) bench/compare $(BENCH_ARGS)

# The steady-tail targets (issue 14) over TAIL_RUNS runs of bench/compare --full --shapes paced,login.
TAIL_RUNS ?= 5
bench-tail: all
	@scripts/deps.sh bench
	BUILD=$(abspath $(BUILD)) bench/tail-check $(TAIL_RUNS)

# Plain against encrypted P2P sessions on loopback, and the handshake time.
bench-p2p: $(BUILD)/parley-p2p-bench
	$(BUILD)/parley-p2p-bench $(BENCH_P2P_ARGS)

# A few seconds of the benchmark tool against parleyd, and a tiny pass against 3 nodes on one
# Redis (the cluster rows), to prove it still works.
bench-smoke: all
	BUILD=$(abspath $(BUILD)) bench/compare --smoke

# Long runs that are not part of make test: 1,000 clients for SOAK_SECONDS (default 600), the
# 60-second P2P secret expiry, 100,000 abandoned registrations, a valgrind tour of every server
# feature, and the big versions of the server-limit tests (P2P storm, WHOSINCE flood on a big
# history, idle connection flood).
soak: all
	/usr/bin/python3 tests/soak/soak.py --build $(abspath $(BUILD)) --seconds $(or $(SOAK_SECONDS),600)
	/usr/bin/python3 tests/soak/p2p_expiry.py --build $(abspath $(BUILD))
	/usr/bin/python3 tests/soak/register_flood.py --build $(abspath $(BUILD))
	/usr/bin/python3 tests/soak/valgrind_tour.py --build $(abspath $(BUILD))
	/usr/bin/python3 tests/soak/limits.py --build $(abspath $(BUILD))

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj $(BUILD)/tests -name '*.d' 2>/dev/null)
