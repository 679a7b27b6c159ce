#!/usr/bin/env bash
# Prometheus endpoints (--metrics-listen) of every service of a real local cluster, scraped with
# Python's urllib and parsed strictly (text format 0.0.4: HELP/TYPE before samples, label syntax,
# cumulative histogram buckets ending in +Inf == _count); the counters must match the traffic
# sent. Also pool sizing: after a 40-step T2V request (shift 12, boundary 0.875) `wanctl status`
# reports 26 high / 14 low steps, and after a 40-step request on the I2V schedule (shift 5,
# boundary 0.9: 15 high / 25 low) the totals 41:39. Prints PASS/FAIL per check.
. "$(dirname "$0")/itlib.sh"
wait_for() { local n=$(($1 * 5)); shift; for _ in $(seq "$n"); do "$@" && return 0; sleep 0.2; done; return 1; }

if ! "$LC" up --high 1 --low 1 --router-flags "--stats-interval-ms 200" > "$T/up.log" 2>&1; then
  fail metrics_cluster_up "$(tail -n 5 "$T/up.log")"
  exit 1
fi
pass metrics_cluster_up
G() { "$bin/wanctl" generate --size 64x64 --frames 9 --seed 5 --steps 40 "$@"; }
G --prompt "pool sizing, t2v schedule" --out "$T/a.mp4" > /dev/null 2> "$T/a.err"
check metrics_t2v_request_completes test -s "$T/a.mp4"
sizing() { "$bin/wanctl" status 2>/dev/null | grep -q "by step count $1)"; }
check pool_sizing_t2v_26_high_14_low wait_for 10 sizing 26:14
G --prompt "pool sizing, i2v schedule" --shift 5 --boundary 0.9 --out "$T/b.mp4" > /dev/null 2> "$T/b.err"
check pool_sizing_plus_i2v_schedule_15_high_25_low wait_for 10 sizing 41:39
"$bin/wanctl" status > "$T/status.out" 2>&1
check pool_sizing_recommends_replicas grep -q "for the 2 expert replicas registered now: 1 high, 1 low" "$T/status.out"
check pool_sizing_utilisation_listed grep -q "^utilisation expert-high" "$T/status.out"

# every service: name -> metrics address, from `local-cluster status` ("... metrics ADDR")
"$LC" status | awk '$NF ~ /^127\.0\.0\.1:[0-9]+$/ && $(NF-1) == "metrics" { print $1, $NF }' > "$T/targets"
check metrics_every_service_has_an_endpoint test "$(wc -l < "$T/targets")" -eq 5

python3 - "$T/targets" <<'PY'
import re, sys, urllib.request, urllib.error

def parse(text):
    """Strict text-format 0.0.4 parser: {(name, frozenset(labels)): value}, types."""
    types, samples, seen_type = {}, {}, set()
    label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for ln in text.splitlines():
        if not ln:
            continue
        if ln.startswith('# HELP '):
            continue
        if ln.startswith('# TYPE '):
            _, _, name, kind = ln.split(' ', 3)
            assert kind in ('counter', 'gauge', 'histogram', 'summary', 'untyped'), ln
            assert name not in types, 'TYPE twice: ' + name
            types[name] = kind
            continue
        assert not ln.startswith('#'), ln
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', ln)
        assert m, 'bad sample line: ' + ln
        name, lbl, val = m.group(1), m.group(3) or '', m.group(4)
        base = re.sub(r'_(bucket|sum|count)$', '', name)
        assert name in types or base in types, 'sample before TYPE: ' + ln
        labels = dict(label_re.findall(lbl))
        rebuilt = ','.join('%s="%s"' % kv for kv in label_re.findall(lbl))
        assert rebuilt == lbl, 'bad labels: ' + ln
        samples[(name, frozenset(labels.items()))] = float(val)
    # histograms: cumulative buckets, +Inf == count
    for name, kind in types.items():
        if kind != 'histogram':
            continue
        series = {}
        for (n, ls), v in samples.items():
            if n == name + '_bucket':
                d = dict(ls); le = d.pop('le')
                series.setdefault(frozenset(d.items()), []).append((float(le), v))
        for ls, bs in series.items():
            bs.sort()
            assert bs[-1][0] == float('inf'), name
            assert all(a[1] <= b[1] for a, b in zip(bs, bs[1:])), 'not cumulative: ' + name
            assert bs[-1][1] == samples[(name + '_count', ls)], '+Inf != count: ' + name
    return types, samples

def get(s, name, **labels):
    want = set(labels.items())
    return sum(v for (n, ls), v in s.items() if n == name and want <= set(ls))

ok = True
def check(name, cond, detail=''):
    global ok
    print(('PASS ' if cond else 'FAIL ') + name + ('' if cond else ': ' + str(detail)))
    ok = ok and cond

scraped = {}
for line in open(sys.argv[1]):
    svc, addr = line.split()
    try:
        r = urllib.request.urlopen('http://%s/metrics' % addr, timeout=10)
        ctype = r.headers.get('Content-Type', '')
        text = r.read().decode()
        scraped[svc] = parse(text)
        check('metrics_%s_parses' % svc, 'version=0.0.4' in ctype, ctype)
    except Exception as e:  # noqa: BLE001 -- any failure is this check's failure
        check('metrics_%s_parses' % svc, False, repr(e))
        continue
    types, s = scraped[svc]
    check('metrics_%s_service_info' % svc, get(s, 'wanserve_service_info') == 1)
    check('metrics_%s_process' % svc, get(s, 'process_resident_memory_bytes') > 0)
    try:
        urllib.request.urlopen('http://%s/nope' % addr, timeout=10)
        check('metrics_%s_404' % svc, False, 'no error')
    except urllib.error.HTTPError as e:
        check('metrics_%s_404' % svc, e.code == 404, e.code)

r = scraped.get('router', ({}, {}))[1]
check('metrics_router_requests_ok', get(r, 'wanserve_router_requests_total', task='t2v', code='OK') == 2,
      get(r, 'wanserve_router_requests_total'))
check('metrics_router_request_latency', get(r, 'wanserve_router_request_seconds_count', task='t2v') == 2)
check('metrics_router_step_latency_per_role_version',
      get(r, 'wanserve_router_step_seconds_count', role='expert-high', version='v1') == 41 and
      get(r, 'wanserve_router_step_seconds_count', role='expert-low', version='v1') == 39)
share = get(r, 'wanserve_router_role_step_share', role='expert-high') + \
        get(r, 'wanserve_router_role_step_share', role='expert-low')
check('metrics_router_pool_shares_sum_to_1', abs(share - 1) < 1e-6, share)
check('metrics_router_replica_utilization', any(n == 'wanserve_router_replica_utilization' for n, _ in r))
check('metrics_router_inflight_back_to_0', get(r, 'wanserve_router_inflight') == 0)
for role in ('high', 'low'):
    e = scraped.get(role + '-0', ({}, {}))[1]
    n = 41 if role == 'high' else 39
    check('metrics_expert_%s_requests' % role,
          get(e, 'wanserve_expert_requests_total', code='OK') == n, get(e, 'wanserve_expert_requests_total'))
    check('metrics_expert_%s_batches' % role, get(e, 'wanserve_expert_batch_size_count') >= 1)
    check('metrics_expert_%s_queue_wait' % role, get(e, 'wanserve_expert_queue_wait_seconds_count') == n)
    # contexts go once per replica and request (2 requests), every other step hits the cache
    check('metrics_expert_%s_context_cache' % role,
          get(e, 'wanserve_expert_context_cache_total', result='store') == 2 and
          get(e, 'wanserve_expert_context_cache_total', result='hit') == n - 2,
          get(e, 'wanserve_expert_context_cache_total'))
    check('metrics_expert_%s_queue_empty' % role, get(e, 'wanserve_expert_queue_depth') == 0)
# every service counts its gRPC calls (issue 19, item 9): the encoder and decoder had nothing
enc, dec = scraped.get('encoder-0', ({}, {}))[1], scraped.get('decoder-0', ({}, {}))[1]
check('metrics_encoder_requests', get(enc, 'wanserve_rpc_requests_total',
      method='/wanserve.v1.Encoder/EncodeText', code='OK') == 2, get(enc, 'wanserve_rpc_requests_total'))
check('metrics_encoder_latency', get(enc, 'wanserve_rpc_request_seconds_count',
      method='/wanserve.v1.Encoder/EncodeText') == 2)
check('metrics_decoder_requests', get(dec, 'wanserve_rpc_requests_total',
      method='/wanserve.v1.Decoder/Decode', code='OK') == 2, get(dec, 'wanserve_rpc_requests_total'))
check('metrics_decoder_latency', get(dec, 'wanserve_rpc_request_seconds_count',
      method='/wanserve.v1.Decoder/Decode') == 2)
sys.exit(0 if ok else 1)
PY
