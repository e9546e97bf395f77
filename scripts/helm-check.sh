#!/usr/bin/env bash
# Checks the Kubernetes packaging offline: installs helm into .tools/bin
# once (go install from the Go module proxy, cached afterwards), lints the
# chart strictly with the default values and with deploy/values-70b.yaml,
# renders it with several sets of values into a temporary directory, and
# runs the Go test in deploy/validate (its own module) that decodes every
# rendered object strictly into its Kubernetes type and checks the chart's
# invariants. Needs no cluster and no network once helm is installed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

HELM_VERSION=v3.22.0
bin="$root/.tools/bin"
helm="$bin/helm"
mkdir -p "$bin"
if [ ! -x "$helm" ] || [ ! -f "$bin/.helm-$HELM_VERSION" ]; then
  echo "helm-check: building helm $HELM_VERSION into .tools/bin (once)" >&2
  GOBIN="$bin" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  touch "$bin/.helm-$HELM_VERSION"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/adaptq-helm.XXXXXX")
trap 'rm -rf "$work"' EXIT
# Keep helm's cache, config and data out of $HOME: nothing is downloaded.
export HELM_CACHE_HOME="$work/helm/cache" HELM_CONFIG_HOME="$work/helm/config" HELM_DATA_HOME="$work/helm/data"

chart=helm/adaptq
tls_values=(--set temporal.tls.enabled=true --set temporal.tls.serverName=temporal.internal
  --set metrics.serviceMonitor.enabled=true --set run.enabled=true)

echo "== helm lint --strict"
"$helm" lint --strict "$chart"
"$helm" lint --strict -f deploy/values-70b.yaml "$chart"
"$helm" lint --strict "${tls_values[@]}" "$chart"

echo "== helm template"
rendered="$work/rendered"
"$helm" template adaptq "$chart" --namespace adaptq --output-dir "$rendered/default" >/dev/null
"$helm" template adaptq "$chart" --namespace adaptq -f deploy/values-70b.yaml --output-dir "$rendered/values-70b" >/dev/null
"$helm" template adaptq "$chart" --namespace adaptq "${tls_values[@]}" --output-dir "$rendered/tls-monitor-run" >/dev/null
find "$rendered" -name '*.yaml' | sort | sed "s|$rendered/||"

# The chart refuses values that break an invariant.
refuse() {
  if "$helm" template adaptq "$chart" "$@" >/dev/null 2>"$work/refuse.log"; then
    echo "helm-check: the chart rendered with $* but must refuse it" >&2; exit 1
  fi
  echo "refused as it must ($*): $(grep -o 'must be[^"]*' "$work/refuse.log" | head -n 1)"
}
refuse --set roles.quantize.autoscaling.minReplicas=0
refuse --set stopTimeoutSeconds=0
refuse --set terminationGraceMarginSeconds=0

echo "== rendered objects: strict decode and invariants (deploy/validate)"
(cd deploy/validate && go vet ./... && ADAPTQ_RENDERED="$rendered" go test -count=1 -v ./... 2>&1 | grep -v '^=== ' )
echo "== helm check passed"
