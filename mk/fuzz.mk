# fuzz.mk — libFuzzer harnesses (fuzz/fuzz_*.c, issue 9).
#
# `make fuzz` builds the library, the service objects and every harness with clang
# (-fsanitize=fuzzer-no-link,address,undefined; the harness link adds -fsanitize=fuzzer) into
# $(FUZZ_BUILD) (default build-fuzz/; harnesses link with clang++ for the C++ UBSan runtime of
# the tokenizer shim), then runs each harness for FUZZ_SECONDS (default 60)
# through fuzz/run.sh, seeded from fuzz/corpus/<name>/ (new corpus entries go to a scratch
# directory, never into the repo; crashes land in $(FUZZ_BUILD)/artifacts/).
# `make fuzz-build` only builds. tests/it_fuzz.sh is the short CI variant (~15 s per harness).
#
# The harness rules below are generic over BUILD, but only make sense in the clang build: the
# top-level targets re-invoke make with BUILD=$(FUZZ_BUILD) CC=clang.

FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_SAN := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined \
  -fno-omit-frame-pointer
FUZZ_NAMES := $(patsubst fuzz/fuzz_%.c,%,$(wildcard fuzz/fuzz_*.c))
FUZZ_BINS := $(patsubst %,$(BUILD)/fuzz/fuzz_%,$(FUZZ_NAMES))
# fuzz_rpc calls the services' own request checks: every service source but main.c (the
# gateway's too: router objects call into it)
FUZZ_SVC_SRCS := $(filter-out %/main.c,$(wildcard encoder/*.c router/*.c gateway/*.c services/*/*.c))
FUZZ_SVC_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(FUZZ_SVC_SRCS))

$(patsubst fuzz/%.c,$(BUILD)/obj/fuzz/%.o,$(wildcard fuzz/fuzz_*.c)): | $(BUILD)/gen/.stamp

$(BUILD)/fuzz/fuzz_rpc: $(FUZZ_SVC_OBJS)
$(BUILD)/fuzz/fuzz_%: $(BUILD)/obj/fuzz/fuzz_%.o $(BUILD)/libwanserve.a
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "  LD    $@")
	$(Q)$(CXX) -fsanitize=fuzzer -o $@ $(filter %.o,$^) $(BUILD)/libwanserve.a $(LDLIBS)

.PHONY: fuzz fuzz-build fuzz-bins
fuzz-bins: $(FUZZ_BINS)

FUZZ_MAKE = $(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=clang CXX=clang++ NO_CUDA=1 \
  OPT=-O1 SAN="$(FUZZ_SAN)"
fuzz-build: deps
	@$(FUZZ_MAKE) -j$(NPROC) fuzz-bins

fuzz: fuzz-build
	@FUZZ_BUILD=$(FUZZ_BUILD) bash fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_NAMES)
