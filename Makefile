# wanserve — top-level build. Everything lands in $(BUILD) (default build/), binaries in
# $(BUILD)/bin. CUDA sources (cuda/*.cu) are compiled when nvcc is found.
# Fragments in mk/*.mk add generated sources (protobuf-c) and extra rules.

BUILD ?= build
CC ?= gcc
CXX ?= g++
SAN ?=
OPT ?= -O2
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -Wshadow -g $(OPT) \
  -fno-math-errno -fopenmp -I. -I$(BUILD)/gen -MMD -MP
CXXFLAGS_BASE := -std=c++17 -Wall -Wextra -g $(OPT) -I. -MMD -MP

PKGS := openblas libcjson grpc libprotobuf-c libavformat libavcodec libavutil libswscale \
  sentencepiece libutf8proc libzip libpng libjpeg libmicrohttpd
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

NVCC := $(shell command -v nvcc 2>/dev/null || { test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc; })
CUDA_SRCS := $(wildcard cuda/*.cu)
# nvcc alone is not enough: some machines carry the compiler package without the toolkit's
# libraries, and the link then fails. Resolve symlinks (nvcc may be /usr/bin/nvcc -> toolkit)
# and require cudart_static and cuBLAS(Lt) beside it; otherwise build CPU-only and say why.
CUDA_HOME := $(patsubst %/bin/nvcc,%,$(realpath $(NVCC)))
CUDA_LIBDIR := $(firstword $(foreach d,$(CUDA_HOME)/lib64 $(CUDA_HOME)/lib \
  $(CUDA_HOME)/targets/x86_64-linux/lib,$(if $(wildcard $(d)/libcudart_static.a),$(d))))
CUDA_LIBS_OK := $(and $(CUDA_LIBDIR),$(wildcard $(CUDA_LIBDIR)/libcublas.so),\
  $(wildcard $(CUDA_LIBDIR)/libcublasLt.so))
ifneq ($(NVCC),)
  ifneq ($(CUDA_SRCS),)
    ifneq ($(CUDA_LIBS_OK),)
      HAVE_CUDA := 1
    else
      CUDA_SKIP_WHY := nvcc at $(NVCC) but no cudart_static/cuBLAS/cuBLASLt libraries under $(CUDA_HOME)
    endif
  endif
endif
ifdef NO_CUDA
  HAVE_CUDA :=
endif

CFLAGS := $(CFLAGS_BASE) $(PKG_CFLAGS) $(SAN) $(EXTRA_CFLAGS)
CXXFLAGS := $(CXXFLAGS_BASE) $(PKG_CFLAGS) $(SAN)
LDLIBS := $(PKG_LIBS) -lstdc++ -lm -lpthread -fopenmp $(SAN)

# plain `make` is `make all` (deps, then build): mk/*.mk below define file targets, and without
# this the first of them (a generated asset) would be the default goal (issue 19, item 11)
.DEFAULT_GOAL := all

LIB_C := $(wildcard core/*.c media/*.c models/*.c rpc/*.c runtime/*.c)
LIB_CXX := $(wildcard models/*.cc)
GEN_C :=
-include mk/*.mk
LIB_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_C) $(GEN_C)) \
  $(patsubst %.cc,$(BUILD)/obj/%.o,$(LIB_CXX))

ifdef HAVE_CUDA
  CFLAGS += -DWS_HAVE_CUDA
  # sm_90a machine code for Hopper plus compute_90 PTX; cuDNN is dlopen'ed at run time (only its
  # headers are needed here); cudart is linked statically so the binaries run on any driver
  # that supports this toolkit; cuBLAS(Lt) come from the toolkit or PyTorch's nvidia/ folders.
  NVCCFLAGS := -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a \
    -gencode=arch=compute_90,code=compute_90 -I. -Xcompiler -fPIC,-Wall \
    -Wno-deprecated-declarations -DWS_HAVE_CUDA -MMD -MP
  CUDA_OBJ := $(patsubst %.cu,$(BUILD)/obj/%.o,$(CUDA_SRCS))
  # the CUDA objects are linked whole, before the library they call into: the backend
  # registers itself from a constructor (core/backend.h), which an archive member nobody
  # references would never run
  CUDA_LINK := -Wl,--whole-archive $(BUILD)/libwanserve_cuda.a -Wl,--no-whole-archive
  LDLIBS += -L$(CUDA_LIBDIR) -Wl,-rpath,$(CUDA_LIBDIR) -lcudart_static -lcublas \
    -lcublasLt -ldl -lrt
endif

LIB := $(BUILD)/libwanserve.a
CLI_SRCS := $(wildcard cli/*.c)
# service dir -> binary name
SERVICE_DIRS := encoder router services/expert services/decoder
svc_bin = $(BUILD)/bin/wan-$(notdir $(1))
SERVICE_BINS := $(foreach d,$(SERVICE_DIRS),$(if $(wildcard $(d)/*.c),$(call svc_bin,$(d))))
TEST_SRCS := $(wildcard tests/test_*.c)
TEST_BINS := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRCS))
TEST_COMMON := $(filter-out $(TEST_SRCS),$(wildcard tests/*.c))
BENCH_COMMON := bench/benchlib.c
BENCH_SRCS := $(filter-out $(BENCH_COMMON),$(wildcard bench/*.c))
BENCH_BINS := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRCS))
BINS := $(BUILD)/bin/wanctl $(SERVICE_BINS)

.PHONY: all build deps test asan bench demo clean format format-check
NPROC := $(shell nproc 2>/dev/null || echo 2)
all: deps
	@$(MAKE) --no-print-directory -j$(NPROC) build

deps:
	@bash deploy/install-deps.sh

build: $(BINS) $(TEST_BINS) $(BENCH_BINS)
	@echo "build: $(if $(HAVE_CUDA),CUDA backend compiled with $(NVCC),CUDA backend skipped ($(or $(CUDA_SKIP_WHY),no nvcc or no cuda/ sources))) -> $(BUILD)/"

# quiet by default; `make V=1` prints full command lines
Q := $(if $(V),,@)
$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "  CC    $<")
	$(Q)$(CC) $(CFLAGS) -c $< -o $@
$(BUILD)/obj/%.o: %.cc
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "  CXX   $<")
	$(Q)$(CXX) $(CXXFLAGS) -c $< -o $@
$(BUILD)/obj/%.o: %.cu
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "  NVCC  $<")
	$(Q)$(NVCC) $(NVCCFLAGS) -c $< -o $@

# the library target also builds the CUDA archive, so every rule that depends on $(LIB) has it
$(LIB): $(LIB_OBJ) $(if $(HAVE_CUDA),$(BUILD)/libwanserve_cuda.a)
	@mkdir -p $(dir $@)
	@rm -f $@
	$(if $(Q),@echo "  AR    $@")
	$(Q)ar rcs $@ $(LIB_OBJ)

$(BUILD)/libwanserve_cuda.a: $(CUDA_OBJ)
	@mkdir -p $(dir $@)
	@rm -f $@
	$(if $(Q),@echo "  AR    $@")
	$(Q)ar rcs $@ $^

$(BUILD)/bin/wanctl: $(patsubst %.c,$(BUILD)/obj/%.o,$(CLI_SRCS)) $(LIB)
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "  LD    $@")
	$(Q)$(CC) -o $@ $(filter %.o,$^) $(CUDA_LINK) $(LIB) $(LDLIBS)

define svc_rule
$(call svc_bin,$(1)): $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard $(1)/*.c)) $(LIB)
	@mkdir -p $$(dir $$@)
	$(if $(Q),@echo "  LD    $$@")
	$(Q)$(CC) -o $$@ $$(filter %.o,$$^) $(CUDA_LINK) $(LIB) $(LDLIBS)
endef
$(foreach d,$(SERVICE_DIRS),$(if $(wildcard $(d)/*.c),$(eval $(call svc_rule,$(d)))))
# the HTTP gateway (gateway/, its contract in gateway/http.h) is its own part but runs inside the
# router process: wan-router links its objects (they are not in the library, like the services')
GATEWAY_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard gateway/*.c))
$(call svc_bin,router): $(GATEWAY_OBJS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(patsubst %.c,$(BUILD)/obj/%.o,$(TEST_COMMON)) $(LIB)
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "  LD    $@")
	$(Q)$(CC) -o $@ $(filter %.o,$^) $(CUDA_LINK) $(LIB) $(LDLIBS)

# white-box tests of cli/ modules link those objects (cli/ is not in the library)
$(BUILD)/tests/test_genopts: $(BUILD)/obj/cli/genopts.o
$(BUILD)/tests/test_fpipe: $(BUILD)/obj/services/decoder/fpipe.o
# white-box tests of the router (tests/test_router_*.c) link its objects but main.c, and their
# fixture (a private etcd, a registry view, a pool: tests/tools/router_fixture.c)
ROUTER_TEST_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(filter-out router/main.c,$(wildcard router/*.c))) \
  $(GATEWAY_OBJS) \
  $(BUILD)/obj/tests/tools/router_fixture.o $(BUILD)/obj/tests/tools/echo_expert.o
$(filter $(BUILD)/tests/test_router_%,$(TEST_BINS)): $(ROUTER_TEST_OBJS)

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(patsubst %.c,$(BUILD)/obj/%.o,$(BENCH_COMMON)) $(LIB)
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "  LD    $@")
	$(Q)$(CC) -o $@ $(filter %.o,$^) $(CUDA_LINK) $(LIB) $(LDLIBS)

test: deps
	@$(MAKE) --no-print-directory -j$(NPROC) build
	@BUILD=$(BUILD) bash tests/run.sh

asan: deps
	@$(MAKE) --no-print-directory -j$(NPROC) build BUILD=build-asan NO_CUDA=1 OPT=-O1 \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
	@BUILD=build-asan ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 bash tests/run.sh

bench: all
	@BUILD=$(BUILD) bash bench/run.sh

demo: all
	@BUILD=$(BUILD) bash deploy/demo.sh

FORMAT_SRCS = $(shell git ls-files '*.c' '*.h' '*.cc' '*.cu' '*.cuh' 2>/dev/null)
format:
	clang-format -i $(FORMAT_SRCS)
format-check:
	@clang-format --dry-run --Werror $(FORMAT_SRCS) && echo "format-check: ok"

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
