#!/usr/bin/env bash
# Browser test of the router's web page (issue 11): Debian's Chromium, headless, driven by
# playwright-core (tests/browser) against a local cluster started with --http-listen. Types a
# prompt, submits, sees the progress bar move and the per-step timeline fill, and the <video>
# load and play. The screenshot of the finished page is kept in $BUILD/browser-screenshot.png;
# with WS_UPDATE_SCREENSHOT=1 (or when it is missing) it also replaces docs/screenshot.png.
# Without node or Chromium it prints "SKIP browser test: <why>" and passes (deploy/install-deps.sh
# installs Chromium; node comes with the machine). Then the token flow (tests/browser/token.mjs)
# against a router started with --auth-tokens.
source "$(dirname "$0")/itlib.sh"
chromium=${CHROMIUM:-/usr/bin/chromium}
command -v node > /dev/null || { echo "SKIP browser test: node not found"; exit 0; }
[ -x "$chromium" ] || { echo "SKIP browser test: no Chromium at $chromium"; exit 0; }
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
[ "$major" -ge 20 ] || { echo "SKIP browser test: node $(node --version) is older than 20"; exit 0; }

# playwright-core (pinned in tests/browser/package-lock.json), installed once
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  command -v npm > /dev/null || { echo "SKIP browser test: npm not found"; exit 0; }
  if ! (cd tests/browser && timeout 300 npm ci --no-audit --no-fund > /dev/null 2>&1); then
    fail browser_npm_install "npm ci in tests/browser failed"
    exit 1
  fi
fi

# two low-noise replicas, and steps slow enough (25 ms) for the bar to be seen moving
if ! "$LC" up --low 2 --expert-flags "--step-delay-ms 25" \
    --router-flags "--http-listen 127.0.0.1:0" > "$T/up.log" 2>&1; then
  fail browser_cluster_up "$(tail -n 5 "$T/up.log")"
  exit 1
fi
H=$("$LC" status | sed -n 's/^http: //p')
[ -n "$H" ] || { fail browser_cluster_up "no http address in status"; exit 1; }

shot="$T/screenshot.png"
timeout 300 node tests/browser/generate.mjs "http://$H/" "$shot" 30
rc=$?
[ $rc -eq 0 ] || [ $rc -eq 1 ] || fail browser_test "node exited with $rc"
if [ -s "$shot" ]; then
  mkdir -p "$BUILD"
  cp "$shot" "$BUILD/browser-screenshot.png"
  if [ "${WS_UPDATE_SCREENSHOT:-0}" = 1 ] || [ ! -f docs/screenshot.png ]; then
    mkdir -p docs
    cp "$shot" docs/screenshot.png
    echo "screenshot copied to docs/screenshot.png"
  fi
  pass browser_screenshot_saved
else
  fail browser_screenshot_saved
fi

# the same page against a router that requires a bearer token
"$LC" down > /dev/null 2>&1
tok="tok-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
echo "$tok" > "$T/tokens"
if ! "$LC" up --router-flags "--http-listen 127.0.0.1:0 --auth-tokens $T/tokens" > "$T/up2.log" 2>&1; then
  fail browser_token_cluster_up "$(tail -n 5 "$T/up2.log")"
  exit 1
fi
H=$("$LC" status | sed -n 's/^http: //p')
timeout 200 node tests/browser/token.mjs "http://$H/" "$tok"
rc2=$?
[ $rc2 -eq 0 ] || [ $rc2 -eq 1 ] || fail browser_token_test "node exited with $rc2"
[ $rc -ne 0 ] && exit $rc
exit $rc2
