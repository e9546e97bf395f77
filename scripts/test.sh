#!/usr/bin/env bash
# The whole test suite: installs the tools it needs (MinIO, node-llama-cpp)
# into .tools/, checks formatting and vet, runs every test against the real
# services, then every fuzz target for a bounded time.
#   FUZZTIME=10s   time per fuzz target (0 skips fuzzing)
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-10s}

bash scripts/tools.sh

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.tools/*'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

echo "== go test"
go test -count=1 -timeout 30m ./...
bash scripts/helm-check.sh

if [ "$FUZZTIME" != "0" ]; then
  echo "== fuzz ($FUZZTIME each)"
  for pkg in $(go list ./...); do
    for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
      echo "-- $pkg $target"
      go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 0 "$pkg" > /tmp/adaptq-fuzz.log 2>&1 || { cat /tmp/adaptq-fuzz.log; exit 1; }
      tail -n 1 /tmp/adaptq-fuzz.log
    done
  done
fi
echo "== all tests passed"
