# hardening.mk — chaos under load and the soak test (issue 9); fuzzing is in mk/fuzz.mk.
#
#   make chaos   deploy/chaos.sh: CHAOS_REQUESTS (default 60) concurrent requests against a local
#                cluster (2 high + 2 low experts) while experts are killed, etcd and the decoder
#                restarted; fails unless every request succeeds bit-identical to --local;
#                then deploy/chaos_http.sh: CHAOS_HTTP_JOBS (default 60) /v1/videos jobs on 2
#                routers while routers are killed with -9 and restarted; fails unless every job
#                completes with the frames of an undisturbed run (0 lost jobs).
#   make soak    tests/it_soak.sh with SOAK_REQUESTS (default 200): RSS of every service must
#                stay flat over many requests.
# The CI variants (tests/it_chaos.sh, tests/it_chaos_http.sh, tests/it_soak.sh) run inside
# `make test`.

CHAOS_REQUESTS ?= 60
CHAOS_CONCURRENCY ?= 4
CHAOS_HTTP_JOBS ?= 60
SOAK_REQUESTS ?= 200

.PHONY: chaos soak
chaos: all
	@BUILD=$(BUILD) bash deploy/chaos.sh --requests $(CHAOS_REQUESTS) \
	  --concurrency $(CHAOS_CONCURRENCY) --steps 10 --step-delay-ms 150 --pause-s 1.5
	@BUILD=$(BUILD) bash deploy/chaos_http.sh --jobs $(CHAOS_HTTP_JOBS) --concurrency 6 \
	  --steps 10 --step-delay-ms 120 --kill-every-s 3

soak: all
	@BUILD=$(BUILD) IT_SOAK_REQUESTS=$(SOAK_REQUESTS) bash tests/it_soak.sh
