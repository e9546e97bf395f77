// Package helm holds no Go code. The folder holds the adaptq Helm chart
// (helm/adaptq): one worker Deployment per role (quantize, eval),
// autoscaled by KEDA's temporal scaler on the task-queue backlog, with
// PodDisruptionBudgets, probes, a read-only non-root security context,
// secrets by reference, and an optional Job that starts a run. See
// docs/OPERATIONS.md and scripts/helm-check.sh.
package helm
