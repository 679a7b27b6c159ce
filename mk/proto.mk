# proto.mk — protobuf-c code generation (issue 5) and the RPC test tool.
#
# proto/**/*.proto are compiled by protoc-c at build time into $(BUILD)/gen/ (never committed).
# GEN_C holds the *logical* names gen/<path>.pb-c.c so the top-level Makefile turns them into
# objects $(BUILD)/obj/gen/<path>.pb-c.o; the pattern rule below compiles those from
# $(BUILD)/gen/<path>.pb-c.c (its stem is shorter than the generic `$(BUILD)/obj/%.o: %.c`, so
# make prefers it). This works for relative and absolute BUILD alike.
#
# Every object of the project may include a generated header (rpc/, services, router, cli, tests),
# so all of them wait for generation through an order-only prerequisite on one stamp; after the
# first build their .d files carry the real header dependencies.

PROTO_SRCS := $(sort $(shell find proto -name '*.proto' 2>/dev/null))
PROTO_GEN_REL := $(patsubst proto/%.proto,gen/%.pb-c.c,$(PROTO_SRCS))
PROTO_GEN_C := $(addprefix $(BUILD)/,$(PROTO_GEN_REL))
PROTO_GEN_H := $(PROTO_GEN_C:.c=.h)
PROTO_STAMP := $(BUILD)/gen/.stamp
GEN_C += $(PROTO_GEN_REL)

$(PROTO_STAMP): $(PROTO_SRCS)
	@mkdir -p $(BUILD)/gen
	$(if $(Q),@echo "  PROTO $(words $(PROTO_SRCS)) files")
	$(Q)protoc-c -Iproto --c_out=$(BUILD)/gen $(PROTO_SRCS)
	@touch $@

# The generated files are products of the stamp's recipe; this rule only ties them to it.
$(PROTO_GEN_C) $(PROTO_GEN_H): $(PROTO_STAMP)
	@test -f $@ || { echo "proto.mk: $@ was not generated" >&2; exit 1; }

$(BUILD)/obj/gen/%.o: $(BUILD)/gen/%.c | $(PROTO_STAMP)
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "  CC    $<")
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

PROTO_USER_SRCS := $(wildcard core/*.c media/*.c models/*.c rpc/*.c runtime/*.c cli/*.c \
  encoder/*.c router/*.c services/*/*.c tests/*.c tests/tools/*.c bench/*.c)
PROTO_USER_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(PROTO_USER_SRCS)) \
  $(patsubst %.cc,$(BUILD)/obj/%.o,$(wildcard models/*.cc))
$(PROTO_USER_OBJS): | $(PROTO_STAMP)

# rpc-testsrv: a tiny server (Health, Expert.Info, Expert.Denoise echo) for the black-box tests
# (tests/it_rpc_health.sh with Python's grpcio; tests/test_etcd kills it with SIGKILL while
# registered). Order-only for test_etcd so it is not put on that binary's link line.
RPC_TESTSRV := $(BUILD)/bin/rpc-testsrv
$(RPC_TESTSRV): $(BUILD)/obj/tests/tools/rpc_testsrv.o $(BUILD)/obj/tests/tools/echo_expert.o \
  $(BUILD)/libwanserve.a
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "  LD    $@")
	$(Q)$(CC) -o $@ $^ $(LDLIBS)
build: $(RPC_TESTSRV)
$(BUILD)/tests/test_etcd: | $(RPC_TESTSRV)

.PHONY: proto
proto: $(PROTO_STAMP)
