// Package helm holds no Go code yet. The folder will hold the adaptq Helm
// chart: one worker Deployment per role, autoscaled by KEDA on the Temporal
// task-queue backlog.
package helm
