// The web page of wan-router's HTTP gateway: submits a job to POST /v1/videos, follows it over
// Server-Sent Events (/v1/videos/{id}/events), draws the progress bar and the per-step timeline,
// then plays /v1/videos/{id}/content. Plain JS, no build step; served from the binary.
'use strict';

const $ = (id) => document.getElementById(id);
const FIELDS = ['prompt', 'negative', 'size', 'frames', 'steps', 'seed', 'guidance', 'solver'];
let imageData = null; // data: URL of the chosen image (I2V)
let current = null; // {id, es}

// The access token (routers started with --auth-tokens): a header on fetch, ?access_token= where
// the browser cannot send headers (EventSource, <video>). Kept for this tab only.
const token = () => $('token').value.trim();
const withToken = (url) =>
  token() ? url + (url.includes('?') ? '&' : '?') + 'access_token=' + encodeURIComponent(token()) : url;

async function api(path, opts = {}) {
  const headers = Object.assign({}, opts.headers);
  if (token()) headers.Authorization = 'Bearer ' + token();
  const r = await fetch(path, Object.assign({}, opts, {headers}));
  const body = await r.json().catch(() => ({}));
  if (!r.ok) {
    const e = body.error || {};
    if (e.code === 'UNAUTHENTICATED') $('auth').open = true; // show where the token goes
    throw new Error(e.code ? `${e.code}: ${e.message}` : `HTTP ${r.status}`);
  }
  return body;
}

const secs = (ms) => (ms / 1000).toFixed(1) + ' s';
const shortId = (id) => id.replace(/^video_/, '').slice(0, 8);

function setBar(pct) {
  const bar = $('bar');
  bar.style.width = pct + '%';
  bar.setAttribute('aria-valuenow', String(pct));
}

function addCell(s) {
  const tl = $('timeline');
  if (tl.querySelector(`[data-step="${s.step}"]`)) return; // replayed after a reconnect
  const cell = document.createElement('span');
  cell.className = 'cell ' + s.role + (s.attempts > 1 ? ' retried' : '');
  cell.dataset.step = s.step;
  cell.dataset.replica = s.replica;
  cell.title = `step ${s.step}/${s.total} · ${s.role} · ${s.replica} (${s.version})` +
    ` · t=${Math.round(s.timestep)} · ${secs(s.elapsed_ms)}` +
    (s.attempts > 1 ? ` · ${s.attempts} attempts` : '');
  tl.appendChild(cell);
  // steps per replica: which members of each pool did the work
  const counts = {};
  tl.querySelectorAll('.cell').forEach((c) => {
    counts[c.dataset.replica] = (counts[c.dataset.replica] || 0) + 1;
  });
  $('replicas').textContent = 'steps per replica: ' +
    Object.entries(counts).map(([r, n]) => `${r} ×${n}`).join(' · ');
}

function showStep(s) {
  setBar(s.progress);
  addCell(s);
  const phase = s.step < s.total ? 'denoising' : 'decoding';
  $('status').textContent = `Step ${s.step}/${s.total} · ${s.role} · replica ${s.replica}` +
    ` (${s.version}) · ${secs(s.elapsed_ms)} · ${phase}`;
}

function showJob(job) {
  $('job-title').textContent = `Video ${shortId(job.id)}`;
  $('job-title').title = job.id;
  $('job-prompt').textContent = job.prompt;
  $('job').dataset.status = job.status;
  $('cancel').hidden = !(job.status === 'queued' || job.status === 'in_progress');
  setBar(job.progress || 0);
  if (job.timeline) job.timeline.forEach(addCell);
  const st = $('status');
  if (job.status === 'queued') st.textContent = 'Queued: waiting for the router…';
  else if (job.status === 'in_progress' && !job.step) st.textContent = 'Accepted · encoding the prompt…';
  else if (job.status === 'in_progress') {
    const last = job.timeline && job.timeline[job.timeline.length - 1];
    if (last) showStep(last);
  } else if (job.status === 'completed') {
    st.textContent = `Done in ${secs(job.elapsed_ms)} · ${job.total} steps · ` +
      `${(job.bytes / 1024).toFixed(0)} KiB MP4`;
    showVideo(job);
  } else {
    const e = job.error || {};
    st.textContent = `${job.status === 'cancelled' ? 'Cancelled' : 'Failed'}: ${e.code} · ${e.message}`;
  }
  st.className = 'status ' + job.status;
}

function showVideo(job) {
  const v = $('video');
  if (v.dataset.id !== job.id) {
    v.dataset.id = job.id;
    v.src = withToken(job.content_url);
    v.hidden = false;
    v.play().catch(() => {}); // muted, so autoplay is allowed
  }
  const a = $('download');
  a.href = withToken(job.content_url);
  a.download = job.id + '.mp4';
  a.hidden = false;
}

function resetPanel() {
  $('timeline').replaceChildren();
  $('replicas').textContent = '';
  const v = $('video');
  v.pause();
  v.removeAttribute('src');
  v.dataset.id = '';
  v.hidden = true;
  $('download').hidden = true;
  setBar(0);
}

function follow(id) {
  if (current && current.es) current.es.close();
  const es = new EventSource(withToken(`/v1/videos/${id}/events`));
  current = {id, es};
  es.addEventListener('accepted', () => {
    $('status').textContent = 'Accepted · encoding the prompt…';
  });
  es.addEventListener('progress', (ev) => showStep(JSON.parse(ev.data)));
  es.addEventListener('done', (ev) => {
    es.close();
    showJob(JSON.parse(ev.data));
    refreshJobs();
  });
  // "error" is both our final event (with data) and EventSource's connection error (without)
  es.addEventListener('error', (ev) => {
    if (ev.data) {
      es.close();
      showJob(JSON.parse(ev.data));
      refreshJobs();
    } else if (es.readyState === EventSource.CLOSED) {
      api(`/v1/videos/${id}`).then(showJob).catch(() => {});
    }
  });
}

async function open(id) {
  resetPanel();
  const job = await api(`/v1/videos/${id}`);
  showJob(job);
  if (job.status === 'queued' || job.status === 'in_progress') follow(id);
}

async function submit(ev) {
  ev.preventDefault();
  const err = $('form-error');
  err.hidden = true;
  const body = {prompt: $('prompt').value.trim()};
  const neg = $('negative').value.trim();
  if (neg) body.negative_prompt = neg;
  if ($('size').value.trim()) body.size = $('size').value.trim();
  for (const k of ['frames', 'steps', 'seed', 'guidance']) {
    if ($(k).value !== '') body[k] = Number($(k).value);
  }
  if ($('solver').value) body.solver = $('solver').value;
  // the distilled schedule's step list fixes the step count (4 by default): a steps field left
  // over from a 40-step run would be refused
  if (body.solver === 'euler_distill') delete body.steps;
  if (imageData) body.image = imageData;
  FIELDS.forEach((k) => localStorage.setItem('wanserve.' + k, $(k).value));
  $('submit').disabled = true;
  try {
    const job = await api('/v1/videos', {
      method: 'POST',
      headers: {'Content-Type': 'application/json'},
      body: JSON.stringify(body),
    });
    resetPanel();
    showJob(job);
    follow(job.id);
    refreshJobs();
  } catch (e) {
    err.textContent = e.message;
    err.hidden = false;
  } finally {
    $('submit').disabled = false;
  }
}

async function cancel() {
  if (!current) return;
  $('cancel').disabled = true;
  try {
    showJob(await api(`/v1/videos/${current.id}`, {method: 'DELETE'}));
  } catch (e) {
    $('status').textContent = e.message;
  } finally {
    $('cancel').disabled = false;
  }
}

async function refreshJobs() {
  let list;
  try {
    list = await api('/v1/videos?limit=20');
  } catch (e) {
    return;
  }
  const rows = list.data.map((j) => {
    const tr = document.createElement('tr');
    tr.className = 'job-row ' + j.status;
    tr.dataset.id = j.id;
    const when = new Date(j.created_at * 1000).toLocaleTimeString();
    const status = j.status === 'in_progress' ? `${j.progress}%` : j.status.replace('_', ' ');
    [shortId(j.id), j.prompt, status, j.size || '', when].forEach((t, i) => {
      const td = document.createElement('td');
      td.textContent = t;
      if (i === 1) td.className = 'prompt';
      tr.appendChild(td);
    });
    tr.addEventListener('click', () => open(j.id).catch((e) => ($('status').textContent = e.message)));
    return tr;
  });
  if (!rows.length) return;
  $('jobs').replaceChildren(...rows);
}

async function refreshCluster() {
  try {
    const m = await api('/v1/models');
    const parts = m.data.filter((r) => r.id !== 'router').map((r) => {
      const vs = Object.entries(r.versions).map(([v, n]) => `${v}×${n}`).join(' ');
      return `${r.id.replace('expert-', '')} ${r.live}${vs ? ' (' + vs + ')' : ''}`;
    });
    $('cluster').textContent = 'replicas: ' + parts.join(' · ');
    $('cluster').classList.toggle('down', m.data.some((r) => r.id.startsWith('expert') && !r.live));
  } catch (e) {
    const auth = e.message.startsWith('UNAUTHENTICATED');
    $('cluster').textContent = auth ? 'cluster: enter the access token' : 'cluster: unreachable';
    $('cluster').classList.add('down');
  }
}

function pickImage() {
  const f = $('image').files[0];
  if (!f) return;
  const rd = new FileReader();
  rd.onload = () => {
    imageData = rd.result;
    $('preview').src = imageData;
    $('preview').hidden = false;
    $('clear-image').hidden = false;
  };
  rd.readAsDataURL(f);
}

function clearImage() {
  imageData = null;
  $('image').value = '';
  $('preview').hidden = true;
  $('clear-image').hidden = true;
}

FIELDS.forEach((k) => {
  const v = localStorage.getItem('wanserve.' + k);
  if (v !== null && k !== 'prompt') $(k).value = v;
});
$('token').value = sessionStorage.getItem('wanserve.token') || '';
$('token').addEventListener('change', () => {
  sessionStorage.setItem('wanserve.token', token());
  refreshJobs(); // jobs are listed per token
  refreshCluster();
});
$('gen').addEventListener('submit', submit);
$('cancel').addEventListener('click', cancel);
$('image').addEventListener('change', pickImage);
$('clear-image').addEventListener('click', clearImage);
refreshJobs();
refreshCluster();
setInterval(refreshJobs, 4000);
setInterval(refreshCluster, 5000);
