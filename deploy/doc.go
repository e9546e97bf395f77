// Package deploy holds no Go code yet. The folder will hold what operators
// need outside the Helm chart: a container build file, a Job template that
// starts a run with the Temporal CLI, values for a 70B run and the
// search-attribute registration for a real Temporal cluster.
package deploy
