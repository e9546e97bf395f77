// Package deploy holds no Go code. The folder holds what operators need
// outside the Helm chart (helm/adaptq): the container build file
// (Dockerfile), values for a Llama-3-70B run (values-70b.yaml), the
// search-attribute registration for a real Temporal cluster
// (search-attributes.sh) and, in its own Go module (validate/), the test
// that decodes every object the chart renders strictly into its Kubernetes
// type and checks the chart's invariants; scripts/helm-check.sh runs it.
// The Job that starts a run is the chart's run-job.yaml (values run.*).
package deploy
