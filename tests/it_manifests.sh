#!/usr/bin/env bash
# Deployment manifests: every deploy/k8s/*.yaml parses (Debian's /usr/bin/python3 + python3-yaml)
# and has what a wanserve cluster needs — an etcd StatefulSet whose member names match the etcd
# endpoints every service is given; a Deployment per role (encoder, router, expert-high,
# expert-low, decoder) plus a canary expert Deployment of another version; gRPC health probes on
# each service's plaintext --health-listen port (its gRPC port speaks mutual TLS); the TLS
# certificates and the router's tokens from mounted Secrets (wanserve-tls, wanserve-tokens);
# etcd's clients over mutual TLS, its /health plaintext for the readiness probe; the README's
# kubectl commands for both Secrets; nvidia.com/gpu requests exactly on the experts; one image; a metrics
# port matching --metrics-listen; Services that select existing pods; kustomization listing
# every file. The systemd units in deploy/systemd are checked for their ExecStart, stop signal
# and stop timeout. Finally every service command line (k8s args with $(VAR)s expanded, systemd
# ExecStart with specifiers and the env file expanded) is handed to the real binaries of
# $BUILD/bin with a trailing "--backend nope": their flag parser must get through every flag and
# stop only at that (an unknown or malformed flag fails the check). Prints PASS/FAIL per check.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
BUILD=${BUILD:-build}
PY=/usr/bin/python3
if ! $PY -c 'import yaml' 2>/dev/null; then
  echo "FAIL manifests_python3_yaml (install python3-yaml: bash deploy/install-deps.sh)"
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
$PY - "$root" "$root/$BUILD/bin" "$tmp" <<'PY'
import glob, os, re, shlex, subprocess, sys
import yaml

root, bindir, tmp = sys.argv[1:4]
ok = True
def check(name, cond, detail=''):
    global ok
    print(('PASS ' if cond else 'FAIL ') + name + ('' if cond or not detail else ': ' + str(detail)))
    ok = ok and bool(cond)

# ---- k8s
docs, files = [], sorted(glob.glob(os.path.join(root, 'deploy/k8s/*.yaml')))
for f in files:
    try:
        with open(f) as fp:
            ds = [d for d in yaml.safe_load_all(fp) if d is not None]
        for d in ds:
            assert isinstance(d, dict) and d.get('apiVersion') and d.get('kind'), 'no apiVersion/kind'
            assert d['kind'] == 'Kustomization' or d.get('metadata', {}).get('name'), 'no name'
            d.setdefault('metadata', {}).setdefault('name', None)
            d['_file'] = os.path.basename(f)
        docs += ds
        check('k8s_parses_' + os.path.basename(f), True)
    except Exception as e:  # noqa: BLE001
        check('k8s_parses_' + os.path.basename(f), False, e)

by = {(d['kind'], d['metadata']['name']): d for d in docs}
kust = by.get(('Kustomization', None))
listed = set(kust.get('resources', [])) if kust else set()
check('k8s_kustomization_lists_every_file',
      listed == {os.path.basename(f) for f in files} - {'kustomization.yaml'}, listed)
check('k8s_everything_in_namespace_wanserve',
      all(d['metadata'].get('namespace') == 'wanserve' for d in docs
          if d['kind'] not in ('Namespace', 'Kustomization')))

# etcd: StatefulSet + headless Service; the endpoint list every service uses must name its pods
sts = by.get(('StatefulSet', 'etcd'))
check('k8s_etcd_statefulset', sts is not None)
cm = by.get(('ConfigMap', 'wanserve-config'), {}).get('data', {})
if sts:
    svcname, n = sts['spec']['serviceName'], sts['spec']['replicas']
    want = ','.join('etcd-%d.%s.wanserve.svc:2379' % (i, svcname) for i in range(n))
    check('k8s_etcd_endpoints_match_statefulset', cm.get('ETCD_ENDPOINTS') == want,
          '%s vs %s' % (cm.get('ETCD_ENDPOINTS'), want))
    hl = by.get(('Service', svcname), {}).get('spec', {})
    check('k8s_etcd_headless_service', hl.get('clusterIP') == 'None' and
          hl.get('selector') == sts['spec']['selector']['matchLabels'])
    cmd = ' '.join(sts['spec']['template']['spec']['containers'][0].get('command', []))
    members = re.search(r'--initial-cluster=(\S+)', cmd)
    want_m = ','.join('etcd-%d=http://etcd-%d.%s.wanserve.svc:2380' % (i, i, svcname) for i in range(n))
    check('k8s_etcd_initial_cluster_matches', members and members.group(1) == want_m)
    check('k8s_etcd_has_storage', bool(sts['spec'].get('volumeClaimTemplates')))

deps = {name: d for (kind, name), d in by.items() if kind == 'Deployment'}
roles = {'encoder': 'wan-encoder', 'router': 'wan-router', 'expert-high': 'wan-expert',
         'expert-low': 'wan-expert', 'decoder': 'wan-decoder'}
for r in roles:
    check('k8s_deployment_' + r, r in deps)
canaries = [d for d in deps.values()
            if d['spec']['template']['metadata']['labels'].get('track') == 'canary']
check('k8s_canary_expert_deployment', len(canaries) == 1 and
      canaries[0]['spec']['template']['metadata']['labels'].get('component', '').startswith('expert-'))

# issue 19, item 10: the canary is not started by default (its weights may not exist), every
# role and etcd have a PodDisruptionBudget, etcd's liveness survives quorum loss, and a
# NetworkPolicy limits who reaches the pods
check('k8s_canary_scaled_to_zero_by_default', canaries and canaries[0]['spec'].get('replicas') == 0)
pdbs = [d for d in docs if d['kind'] == 'PodDisruptionBudget']
covered = {d['spec']['selector']['matchLabels'].get('component') or
           d['spec']['selector']['matchLabels'].get('app') for d in pdbs}
check('k8s_pdb_for_every_role_and_etcd', set(roles) | {'etcd'} <= covered, covered)
etcd_c = by.get(('StatefulSet', 'etcd'), {}).get('spec', {}).get('template', {}).get('spec', {}) \
    .get('containers', [{}])[0]
live = etcd_c.get('livenessProbe', {})
check('k8s_etcd_liveness_not_quorum_health', 'tcpSocket' in live or
      live.get('httpGet', {}).get('path') not in ('/health', None), live)
check('k8s_network_policy', any(d['kind'] == 'NetworkPolicy' for d in docs))

# issue 19, item 10: the services' --tls-ca makes them reach etcd over mutual TLS, so etcd
# serves its clients that way (certificates from the same Secret) and keeps /health plaintext
# on its metrics port for the readiness probe; the README says how to create both Secrets
ecmd = [str(a) for a in etcd_c.get('command', [])]
eflag = lambda k: next((a.split('=', 1)[1] for a in ecmd if a.startswith(k + '=')), '')
emounts = {m['mountPath'].rstrip('/'): m['name'] for m in etcd_c.get('volumeMounts', [])}
evols = {v['name']: v.get('secret', {}).get('secretName')
         for v in sts['spec']['template']['spec'].get('volumes', [])} if sts else {}
check('k8s_etcd_client_mtls', eflag('--listen-client-urls').startswith('https://') and
      eflag('--advertise-client-urls').startswith('https://') and '--client-cert-auth' in ecmd and
      all(evols.get(emounts.get(os.path.dirname(eflag(k)))) == 'wanserve-tls'
          for k in ('--cert-file', '--key-file', '--trusted-ca-file')), ecmd)
ready = etcd_c.get('readinessProbe', {}).get('httpGet', {})
check('k8s_etcd_readiness_on_plaintext_metrics_port',
      eflag('--listen-metrics-urls').startswith('http://') and ready.get('path') == '/health' and
      str(ready.get('port')) == eflag('--listen-metrics-urls').rsplit(':', 1)[-1], ready)
readme = open(os.path.join(root, 'README.md')).read()
check('k8s_readme_creates_secrets', all(w in readme for w in (
    'create secret generic wanserve-tls', '--from-file=tls.crt=', '--from-file=tls.key=',
    '--from-file=ca.crt=', 'create secret generic wanserve-tokens', '--from-file=tokens=')))

def arg(args, flag):
    return args[args.index(flag) + 1] if flag in args else None

images, cmdlines = set(), []
for name, d in sorted(deps.items()):
    pod = d['spec']['template']['spec']
    c = pod['containers'][0]
    args = [str(a) for a in c.get('args', [])]
    binary = os.path.basename(c['command'][0])
    images.add(c['image'])
    labels = d['spec']['template']['metadata']['labels']
    check('k8s_%s_selector_matches_pod' % name,
          all(labels.get(k) == v for k, v in d['spec']['selector']['matchLabels'].items()))
    ports = {p['name']: p['containerPort'] for p in c.get('ports', [])}
    grpc_port = int(arg(args, '--listen').rsplit(':', 1)[1])
    check('k8s_%s_grpc_port' % name, ports.get('grpc') == grpc_port)
    # issue 19, item 10: the service port speaks mutual TLS, so the kubelet's gRPC probes go to
    # the plaintext --health-listen port (named "health"), never to the TLS one
    hl = arg(args, '--health-listen')
    health_port = int(hl.rsplit(':', 1)[1]) if hl else None
    check('k8s_%s_health_listen_port' % name, hl is not None and ports.get('health') == health_port
          and health_port != grpc_port, hl)
    for probe in ('readinessProbe', 'livenessProbe', 'startupProbe'):
        p = c.get(probe, {})
        check('k8s_%s_%s_grpc_health_port' % (name, probe),
              p.get('grpc', {}).get('port') == health_port and health_port is not None, p)
    # TLS and tokens from Secrets: every path a flag names lies in a mounted Secret volume
    mounts = {m['mountPath'].rstrip('/'): m['name'] for m in c.get('volumeMounts', [])}
    vols = {v['name']: v.get('secret', {}).get('secretName') for v in pod.get('volumes', [])}
    def secret_of(path):
        return vols.get(mounts.get(os.path.dirname(path or '')))
    for flag in ('--tls-cert', '--tls-key', '--tls-ca'):
        check('k8s_%s_%s_from_secret' % (name, flag.lstrip('-')),
              secret_of(arg(args, flag)) == 'wanserve-tls', arg(args, flag))
    if binary == 'wan-router':
        check('k8s_%s_auth_tokens_from_secret' % name,
              secret_of(arg(args, '--auth-tokens')) == 'wanserve-tokens', arg(args, '--auth-tokens'))
        # durable HTTP jobs (issue 18): the API port exposed by the pod and the Service, and the
        # result store on a shared (ReadWriteMany) claim
        hport = (arg(args, '--http-listen') or ':').rsplit(':', 1)[1]
        check('k8s_%s_http_port' % name, hport.isdigit() and ports.get('http') == int(hport),
              (hport, ports))
        svc_ports = [p.get('targetPort') for d in docs if d.get('kind') == 'Service' and
                     d['metadata']['name'] == 'router' for p in d['spec'].get('ports', [])]
        check('k8s_%s_http_in_service' % name, 'http' in svc_ports, svc_ports)
        claims = {v['name']: v.get('persistentVolumeClaim', {}).get('claimName')
                  for v in pod.get('volumes', [])}
        rclaim = claims.get(mounts.get((arg(args, '--results-dir') or '').rstrip('/')))
        pvcs = {d['metadata']['name']: d['spec'].get('accessModes', []) for d in docs
                if d.get('kind') == 'PersistentVolumeClaim'}
        check('k8s_%s_results_on_shared_volume' % name,
              rclaim is not None and 'ReadWriteMany' in pvcs.get(rclaim, []), (rclaim, pvcs))
    check('k8s_%s_metrics_port' % name,
          ports.get('metrics') == int(arg(args, '--metrics-listen').rsplit(':', 1)[1]))
    check('k8s_%s_etcd_from_config' % name, arg(args, '--etcd') == '$(ETCD_ENDPOINTS)' and
          any(e.get('configMapRef', {}).get('name') == 'wanserve-config' for e in c.get('envFrom', [])))
    gpu_req = c.get('resources', {}).get('requests', {}).get('nvidia.com/gpu')
    gpu_lim = c.get('resources', {}).get('limits', {}).get('nvidia.com/gpu')
    is_expert = binary == 'wan-expert'
    check('k8s_%s_gpu_request' % name,
          (gpu_req == 1 and gpu_lim == 1 and arg(args, '--backend') == 'cuda') if is_expert
          else (gpu_req is None and gpu_lim is None))
    drain = int(arg(args, '--drain-ms') or 10000)
    check('k8s_%s_grace_covers_drain' % name, pod.get('terminationGracePeriodSeconds', 30) * 1000 > drain)
    comp = labels.get('component')
    if is_expert:
        check('k8s_%s_role_matches_component' % name, 'expert-' + arg(args, '--role') == comp)
    check('k8s_%s_version_label' % name, arg(args, '--version') == labels.get('version'))
    env = dict(cm, POD_IP='10.1.2.3', POD_NAME=name + '-abc')
    cmdlines.append(('k8s_' + name, binary, [re.sub(r'\$\((\w+)\)', lambda m: env[m.group(1)], a)
                                              for a in args]))
check('k8s_one_wanserve_image', len(images) == 1, images)
check('k8s_canary_other_version', canaries and
      canaries[0]['spec']['template']['metadata']['labels']['version'] !=
      deps.get('expert-low', {}).get('spec', {}).get('template', {}).get('metadata', {}).get('labels', {}).get('version'))
for (kind, name), s in by.items():
    if kind != 'Service' or name == 'etcd':
        continue
    sel = s['spec']['selector']
    hits = [d for d in deps.values()
            if all(d['spec']['template']['metadata']['labels'].get(k) == v for k, v in sel.items())]
    check('k8s_service_%s_selects_pods' % name, len(hits) >= 1)
    names = {p['name'] for p in hits[0]['spec']['template']['spec']['containers'][0]['ports']} if hits else set()
    check('k8s_service_%s_ports_exist' % name, all(p['targetPort'] in names for p in s['spec']['ports']))

# ---- systemd
envf = {}
for ln in open(os.path.join(root, 'deploy/systemd/wanserve.env')):
    ln = ln.strip()
    if ln and not ln.startswith('#'):
        k, v = ln.split('=', 1)
        envf[k] = v
units = sorted(glob.glob(os.path.join(root, 'deploy/systemd/*.service')))
check('systemd_units_present', {os.path.basename(u) for u in units} >=
      {'wan-expert@.service', 'wan-router.service', 'wan-encoder.service', 'wan-decoder.service'})
for u in units:
    txt = open(u).read().replace('\\\n', ' ')
    base = os.path.basename(u)
    sec = {}
    for ln in txt.splitlines():
        if '=' in ln and not ln.lstrip().startswith('#'):
            k, v = ln.split('=', 1)
            sec.setdefault(k.strip(), v.strip())
    check('systemd_%s_sections' % base, all(s in txt for s in ('[Unit]', '[Service]', '[Install]')))
    check('systemd_%s_sigterm' % base, sec.get('KillSignal') == 'SIGTERM')
    drain = re.search(r'--drain-ms (\d+)', sec.get('ExecStart', ''))
    check('systemd_%s_stop_timeout_covers_drain' % base,
          drain and int(sec.get('TimeoutStopSec', '90')) * 1000 > int(drain.group(1)))
    inst = 'low-1' if '@' in base else ''
    line = sec['ExecStart'].replace('%i', inst).replace('%H', 'host1')
    line = line.replace('$$', '\0').replace('%%', '%')
    line = re.sub(r'\$\{(\w+)\}', lambda m: envf[m.group(1)], line).replace('\0', '$')
    cmdlines.append(('systemd_' + base, None, line))

# ---- every command line through the real flag parsers
shim = os.path.join(tmp, 'bin')
os.makedirs(shim, exist_ok=True)
for b in ('wan-expert', 'wan-router', 'wan-encoder', 'wan-decoder'):
    p = os.path.join(shim, b)
    with open(p, 'w') as fp:
        fp.write('#!/bin/sh\nexec "%s/%s" "$@" --backend nope\n' % (bindir, b))
    os.chmod(p, 0o755)
for name, binary, args in cmdlines:
    if binary:  # k8s: argv
        argv = [os.path.join(shim, binary)] + args
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    else:       # systemd: a command line for /bin/sh, binaries under /usr/local/bin
        line = args.replace('/usr/local/bin/', shim + '/')
        r = subprocess.run(['/bin/sh', '-c', line], capture_output=True, text=True, timeout=30,
                           env=dict(os.environ, **envf))
    check('flags_%s' % name, "--backend: 'nope'" in r.stderr, r.stderr.strip()[-300:])
sys.exit(0 if ok else 1)
PY
