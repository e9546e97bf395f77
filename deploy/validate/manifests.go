// Package validate checks the Kubernetes objects that `helm template`
// renders from helm/adaptq: every object decodes strictly into its
// Kubernetes type (an unknown or misspelt field is an error), and the
// operational invariants of the chart hold (graceful stop, non-root and
// read-only containers, resources, secrets only by reference, probes, KEDA
// autoscaling that never reaches zero). It lives in its own module so that
// the main module does not depend on k8s.io/api.
package validate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// ScaledObject is the part of KEDA's keda.sh/v1alpha1 ScaledObject the
// chart writes. Decoded strictly: a field KEDA does not have (or this
// struct does not know) is an error.
type ScaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              ScaledObjectSpec `json:"spec"`
}

// ScaledObjectSpec mirrors KEDA's ScaledObjectSpec.
type ScaledObjectSpec struct {
	ScaleTargetRef        *ScaleTarget     `json:"scaleTargetRef"`
	PollingInterval       *int32           `json:"pollingInterval,omitempty"`
	InitialCooldownPeriod *int32           `json:"initialCooldownPeriod,omitempty"`
	CooldownPeriod        *int32           `json:"cooldownPeriod,omitempty"`
	IdleReplicaCount      *int32           `json:"idleReplicaCount,omitempty"`
	MinReplicaCount       *int32           `json:"minReplicaCount,omitempty"`
	MaxReplicaCount       *int32           `json:"maxReplicaCount,omitempty"`
	Advanced              *AdvancedConfig  `json:"advanced,omitempty"`
	Triggers              []ScaleTrigger   `json:"triggers"`
	Fallback              *json.RawMessage `json:"fallback,omitempty"`
}

// ScaleTarget names the scaled workload.
type ScaleTarget struct {
	APIVersion             string `json:"apiVersion,omitempty"`
	Kind                   string `json:"kind,omitempty"`
	Name                   string `json:"name"`
	EnvSourceContainerName string `json:"envSourceContainerName,omitempty"`
}

// AdvancedConfig is KEDA's spec.advanced.
type AdvancedConfig struct {
	HorizontalPodAutoscalerConfig *HPAConfig `json:"horizontalPodAutoscalerConfig,omitempty"`
	RestoreToOriginalReplicaCount bool       `json:"restoreToOriginalReplicaCount,omitempty"`
}

// HPAConfig is KEDA's horizontalPodAutoscalerConfig; Behavior is the
// Kubernetes type, decoded strictly too.
type HPAConfig struct {
	Name     string                                         `json:"name,omitempty"`
	Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
}

// ScaleTrigger is one KEDA trigger. Metadata values must be strings.
type ScaleTrigger struct {
	Type              string             `json:"type"`
	Name              string             `json:"name,omitempty"`
	UseCachedMetrics  bool               `json:"useCachedMetrics,omitempty"`
	Metadata          map[string]string  `json:"metadata"`
	AuthenticationRef *AuthenticationRef `json:"authenticationRef,omitempty"`
	MetricType        string             `json:"metricType,omitempty"`
}

// AuthenticationRef names a (Cluster)TriggerAuthentication.
type AuthenticationRef struct {
	Name string `json:"name"`
	Kind string `json:"kind,omitempty"`
}

// TriggerAuthentication is the part of KEDA's TriggerAuthentication the
// chart writes: secret references only.
type TriggerAuthentication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SecretTargetRef []struct {
			Parameter string `json:"parameter"`
			Name      string `json:"name"`
			Key       string `json:"key"`
		} `json:"secretTargetRef"`
	} `json:"spec"`
}

// ServiceMonitor is the part of prometheus-operator's ServiceMonitor the
// chart writes.
type ServiceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path,omitempty"`
			Interval      string `json:"interval,omitempty"`
			ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// RunInput is the QuantizeModel workflow input the run Job sends
// (run.json), decoded strictly.
type RunInput struct {
	Model    string `json:"model"`
	Output   string `json:"output"`
	Recipe   string `json:"recipe"`
	Rotation *struct {
		Kind  string `json:"kind"`
		Seed  uint64 `json:"seed"`
		Heads bool   `json:"heads,omitempty"`
	} `json:"rotation,omitempty"`
	Evaluation *struct {
		Text     string `json:"text"`
		Ctx      int    `json:"ctx"`
		Protocol string `json:"protocol"`
	} `json:"evaluation,omitempty"`
	Concurrency int `json:"concurrency,omitempty"`
}

// Set is the objects of one `helm template` rendering.
type Set struct {
	Name            string
	Deployments     []*appsv1.Deployment
	Jobs            []*batchv1.Job
	PDBs            []*policyv1.PodDisruptionBudget
	ServiceAccounts []*corev1.ServiceAccount
	ConfigMaps      []*corev1.ConfigMap
	Services        []*corev1.Service
	ScaledObjects   []*ScaledObject
	TriggerAuths    []*TriggerAuthentication
	ServiceMonitors []*ServiceMonitor
}

// Count is the number of objects in the set.
func (s *Set) Count() int {
	return len(s.Deployments) + len(s.Jobs) + len(s.PDBs) + len(s.ServiceAccounts) + len(s.ConfigMaps) +
		len(s.Services) + len(s.ScaledObjects) + len(s.TriggerAuths) + len(s.ServiceMonitors)
}

// LoadDir reads every *.yaml file under dir (as `helm template
// --output-dir` writes them) into one Set.
func LoadDir(dir string) (*Set, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	set := &Set{Name: filepath.Base(dir)}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		if err := set.Add(f, b); err != nil {
			return nil, err
		}
	}
	return set, nil
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// Add decodes every YAML document of one file strictly into its type.
func (s *Set) Add(file string, data []byte) error {
	for i, doc := range docSep.Split(string(data), -1) {
		if isEmptyDoc(doc) {
			continue
		}
		where := fmt.Sprintf("%s (document %d)", file, i)
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if err := s.decode(where, tm, []byte(doc)); err != nil {
			return err
		}
	}
	return nil
}

func isEmptyDoc(doc string) bool {
	for _, line := range strings.Split(doc, "\n") {
		t := strings.TrimSpace(line)
		if t != "" && !strings.HasPrefix(t, "#") {
			return false
		}
	}
	return true
}

// strict decodes YAML into v, failing on unknown or duplicate fields, and
// on a value of the wrong JSON type. sigs.k8s.io/yaml alone converts a
// scalar to the target's type (an unquoted 2 into a string field), which
// the API server, receiving the JSON of the YAML as written, rejects; so
// the JSON is decoded again, as the API server would, without conversion.
func strict(where string, doc []byte, v any) error {
	if err := yaml.UnmarshalStrict(doc, v); err != nil {
		return fmt.Errorf("%s: strict decode into %T: %w", where, v, err)
	}
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(reflect.New(reflect.TypeOf(v).Elem()).Interface()); err != nil {
		return fmt.Errorf("%s: strict decode into %T (as the API server reads it): %w", where, v, err)
	}
	return nil
}

func (s *Set) decode(where string, tm metav1.TypeMeta, doc []byte) error {
	switch gvk := tm.APIVersion + "/" + tm.Kind; gvk {
	case "apps/v1/Deployment":
		o := &appsv1.Deployment{}
		s.Deployments = append(s.Deployments, o)
		return strict(where, doc, o)
	case "batch/v1/Job":
		o := &batchv1.Job{}
		s.Jobs = append(s.Jobs, o)
		return strict(where, doc, o)
	case "policy/v1/PodDisruptionBudget":
		o := &policyv1.PodDisruptionBudget{}
		s.PDBs = append(s.PDBs, o)
		return strict(where, doc, o)
	case "v1/ServiceAccount":
		o := &corev1.ServiceAccount{}
		s.ServiceAccounts = append(s.ServiceAccounts, o)
		return strict(where, doc, o)
	case "v1/ConfigMap":
		o := &corev1.ConfigMap{}
		s.ConfigMaps = append(s.ConfigMaps, o)
		return strict(where, doc, o)
	case "v1/Service":
		o := &corev1.Service{}
		s.Services = append(s.Services, o)
		return strict(where, doc, o)
	case "keda.sh/v1alpha1/ScaledObject":
		o := &ScaledObject{}
		s.ScaledObjects = append(s.ScaledObjects, o)
		return strict(where, doc, o)
	case "keda.sh/v1alpha1/TriggerAuthentication":
		o := &TriggerAuthentication{}
		s.TriggerAuths = append(s.TriggerAuths, o)
		return strict(where, doc, o)
	case "monitoring.coreos.com/v1/ServiceMonitor":
		o := &ServiceMonitor{}
		s.ServiceMonitors = append(s.ServiceMonitors, o)
		return strict(where, doc, o)
	case "v1/Secret":
		// The chart must never carry a credential: secrets are created by
		// the operator and referenced by name.
		return fmt.Errorf("%s: the chart renders a Secret; secrets must only be referenced", where)
	default:
		return fmt.Errorf("%s: %s is not a kind the chart is expected to render", where, gvk)
	}
}

// secretEnv are the variables that must come from a Secret by reference.
var secretEnv = []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}

// s3Env are the object-store variables a worker must receive.
var s3Env = []string{"ADAPTQ_S3_ENDPOINT", "ADAPTQ_S3_TLS", "AWS_REGION"}

// looksSecret reports whether an environment variable's name says it holds
// a credential.
func looksSecret(name string) bool {
	n := strings.ToUpper(name)
	for _, w := range []string{"SECRET", "PASSWORD", "TOKEN", "ACCESS_KEY", "API_KEY", "CREDENTIAL"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// Check returns every violated invariant of the set (nil when all hold).
func Check(s *Set) []error {
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if s.Count() == 0 {
		fail("%s: no objects rendered", s.Name)
		return errs
	}
	if len(s.Deployments) == 0 {
		fail("%s: no worker Deployment", s.Name)
	}
	roles := map[string]*appsv1.Deployment{}
	for _, d := range s.Deployments {
		where := "Deployment " + d.Name
		pod := &d.Spec.Template.Spec
		errs = append(errs, checkPod(where, pod, true)...)
		c := worker(pod)
		if c == nil {
			fail("%s: no container runs `adaptq worker`", where)
			continue
		}
		args := flags(c.Args[1:])
		for _, f := range []string{"temporal", "namespace", "task-queue", "role", "max-concurrent", "metrics-addr", "health-addr", "stop-timeout"} {
			if args[f] == "" {
				fail("%s: worker flag --%s missing", where, f)
			}
		}
		role := args["role"]
		switch role {
		case "quantize", "eval", "all":
			if roles[role] != nil {
				fail("%s: a second Deployment for role %s", where, role)
			}
			roles[role] = d
		default:
			fail("%s: --role %q (quantize, eval or all)", where, role)
		}
		if n, err := strconv.Atoi(args["max-concurrent"]); err != nil || n < 1 {
			fail("%s: --max-concurrent %q", where, args["max-concurrent"])
		}

		// Graceful stop: Kubernetes waits longer than the worker does.
		stop, err := time.ParseDuration(args["stop-timeout"])
		if err != nil {
			fail("%s: --stop-timeout %q: %v", where, args["stop-timeout"], err)
		} else if pod.TerminationGracePeriodSeconds == nil {
			fail("%s: terminationGracePeriodSeconds not set (the default 30 s is not derived from --stop-timeout %s)", where, stop)
		} else if grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second; grace <= stop {
			fail("%s: terminationGracePeriodSeconds %s is not longer than --stop-timeout %s", where, grace, stop)
		}

		// Scratch space on a read-only root filesystem.
		if !mountsEmptyDir(pod, c, "/tmp") {
			fail("%s: /tmp is not an emptyDir volume", where)
		}

		// Object-store settings and credentials, by reference only.
		for _, name := range append(append([]string{}, s3Env...), secretEnv[:2]...) {
			if !fromSecret(c, name) {
				fail("%s: %s is not set from a Secret (secretKeyRef or envFrom secretRef)", where, name)
			}
		}

		// Temporal mTLS material comes from a mounted Secret.
		for _, f := range []string{"tls-cert", "tls-key", "tls-ca"} {
			if p := args[f]; p != "" && !underSecretMount(pod, c, p) {
				fail("%s: --%s %s is not in a volume mounted from a Secret", where, f, p)
			}
		}

		// Probes on the health endpoint.
		health := port(args["health-addr"])
		checkProbe(&errs, where, "liveness", c.LivenessProbe, "/healthz", health, c)
		checkProbe(&errs, where, "readiness", c.ReadinessProbe, "/readyz", health, c)

		// Metrics: annotations naming the metrics port, or a ServiceMonitor.
		metrics := port(args["metrics-addr"])
		ann := d.Spec.Template.Annotations
		annotated := ann["prometheus.io/scrape"] == "true" && ann["prometheus.io/port"] == strconv.Itoa(metrics)
		if !annotated && len(s.ServiceMonitors) == 0 {
			fail("%s: metrics port %d neither annotated for Prometheus nor covered by a ServiceMonitor", where, metrics)
		}
		if !exposes(c, metrics) {
			fail("%s: container does not declare the metrics port %d", where, metrics)
		}

		// Its ServiceAccount is rendered (or named explicitly).
		if sa := pod.ServiceAccountName; sa == "" {
			fail("%s: no serviceAccountName", where)
		} else if sa != "default" && !hasSA(s, sa) {
			fail("%s: ServiceAccount %q is not rendered", where, sa)
		}

		// A PodDisruptionBudget selects its pods.
		if !hasPDB(s, d) {
			fail("%s: no PodDisruptionBudget selects its pods", where)
		}

		// Autoscaled by a ScaledObject (then replicas is left to the HPA).
		so := scaledObjectFor(s, d.Name)
		if so != nil && d.Spec.Replicas != nil {
			fail("%s: sets replicas although ScaledObject %s scales it", where, so.Name)
		}
		if so != nil {
			for _, tr := range so.Spec.Triggers {
				if tr.Type == "temporal" {
					if tr.Metadata["taskQueue"] != args["task-queue"] {
						fail("ScaledObject %s: taskQueue %q, but the worker polls %q", so.Name, tr.Metadata["taskQueue"], args["task-queue"])
					}
					if tr.Metadata["endpoint"] != args["temporal"] {
						fail("ScaledObject %s: endpoint %q, but the worker dials %q", so.Name, tr.Metadata["endpoint"], args["temporal"])
					}
					if ns := tr.Metadata["namespace"]; ns != "" && ns != args["namespace"] {
						fail("ScaledObject %s: namespace %q, but the worker uses %q", so.Name, ns, args["namespace"])
					}
				}
			}
		}
	}
	if roles["all"] == nil && (roles["quantize"] == nil || roles["eval"] == nil) {
		fail("%s: need worker Deployments for both roles quantize and eval (or one with role all)", s.Name)
	}

	for _, so := range s.ScaledObjects {
		errs = append(errs, checkScaledObject(s, so)...)
	}
	for _, ta := range s.TriggerAuths {
		if len(ta.Spec.SecretTargetRef) == 0 {
			fail("TriggerAuthentication %s: no secretTargetRef", ta.Name)
		}
		for _, r := range ta.Spec.SecretTargetRef {
			switch r.Parameter {
			case "cert", "key", "ca", "keyPassword", "apiKey":
			default:
				fail("TriggerAuthentication %s: parameter %q is not one of the temporal scaler's (cert, key, ca, keyPassword, apiKey)", ta.Name, r.Parameter)
			}
			if r.Name == "" || r.Key == "" {
				fail("TriggerAuthentication %s: parameter %s without a Secret name and key", ta.Name, r.Parameter)
			}
		}
	}
	for _, p := range s.PDBs {
		if p.Spec.Selector == nil || len(p.Spec.Selector.MatchLabels) == 0 {
			fail("PodDisruptionBudget %s: no selector", p.Name)
		}
		if (p.Spec.MinAvailable == nil) == (p.Spec.MaxUnavailable == nil) {
			fail("PodDisruptionBudget %s: needs exactly one of minAvailable and maxUnavailable", p.Name)
		}
	}
	for _, j := range s.Jobs {
		errs = append(errs, checkJob(s, j)...)
	}
	for _, sm := range s.ServiceMonitors {
		if len(sm.Spec.Endpoints) == 0 {
			fail("ServiceMonitor %s: no endpoints", sm.Name)
		}
		sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
		found := false
		for _, svc := range s.Services {
			if err == nil && sel.Matches(labels.Set(svc.Labels)) {
				found = true
			}
		}
		if !found {
			fail("ServiceMonitor %s: selects no rendered Service", sm.Name)
		}
	}
	for _, cm := range s.ConfigMaps {
		for k, v := range cm.Data {
			if strings.Contains(strings.ToUpper(k), "SECRET") || strings.Contains(v, "AWS_SECRET_ACCESS_KEY") {
				fail("ConfigMap %s: key %q looks like a credential", cm.Name, k)
			}
		}
	}
	return errs
}

// checkPod checks what every pod of the chart must satisfy: non-root,
// read-only, no capabilities, seccomp, resources, no literal secrets.
func checkPod(where string, pod *corev1.PodSpec, needPodNonRoot bool) []error {
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(where+": "+format, a...)) }
	psc := pod.SecurityContext
	if needPodNonRoot && (psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot) {
		fail("pod securityContext.runAsNonRoot is not true")
	}
	podSeccomp := psc != nil && psc.SeccompProfile != nil && psc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		fail("automountServiceAccountToken is not false (the workers call no Kubernetes API)")
	}
	all := append(append([]corev1.Container{}, pod.InitContainers...), pod.Containers...)
	if len(pod.Containers) == 0 {
		fail("no containers")
	}
	for _, c := range all {
		cw := fmt.Sprintf("container %s: ", c.Name)
		sc := c.SecurityContext
		if sc == nil {
			fail(cw + "no securityContext")
			continue
		}
		nonRoot := (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) || (sc.RunAsNonRoot == nil && psc != nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot)
		if !nonRoot {
			fail(cw + "runAsNonRoot is not true")
		}
		if uid := effectiveUID(psc, sc); uid != nil && *uid == 0 {
			fail(cw + "runs as uid 0")
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			fail(cw + "readOnlyRootFilesystem is not true")
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			fail(cw + "allowPrivilegeEscalation is not false")
		}
		if sc.Privileged != nil && *sc.Privileged {
			fail(cw + "privileged")
		}
		if sc.Capabilities == nil || !hasCap(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			fail(cw + "capabilities must drop ALL and add none")
		}
		seccomp := podSeccomp
		if sc.SeccompProfile != nil {
			seccomp = sc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault
		}
		if !seccomp {
			fail(cw + "seccompProfile is not RuntimeDefault")
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, okReq := c.Resources.Requests[r]
			lim, okLim := c.Resources.Limits[r]
			if !okReq || !okLim || req.IsZero() || lim.IsZero() {
				fail(cw+"resources.requests and resources.limits must both set %s", r)
			} else if req.Cmp(lim) > 0 {
				fail(cw+"%s request %s above its limit %s", r, req.String(), lim.String())
			}
		}
		for _, e := range c.Env {
			isRef := e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil
			mustRef := hasString(secretEnv, e.Name)
			if mustRef && !isRef {
				fail(cw+"%s must come from a secretKeyRef", e.Name)
			}
			if looksSecret(e.Name) && e.Value != "" {
				fail(cw+"%s has a literal value; credentials only by reference", e.Name)
			}
		}
		if c.Image == "" {
			fail(cw + "no image")
		}
	}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			fail("volume %s is a hostPath", v.Name)
		}
	}
	return errs
}

func effectiveUID(psc *corev1.PodSecurityContext, sc *corev1.SecurityContext) *int64 {
	if sc != nil && sc.RunAsUser != nil {
		return sc.RunAsUser
	}
	if psc != nil {
		return psc.RunAsUser
	}
	return nil
}

func checkProbe(errs *[]error, where, kind string, p *corev1.Probe, path string, healthPort int, c *corev1.Container) {
	if p == nil || p.HTTPGet == nil {
		*errs = append(*errs, fmt.Errorf("%s: no %s probe (httpGet)", where, kind))
		return
	}
	if p.HTTPGet.Path != path {
		*errs = append(*errs, fmt.Errorf("%s: %s probe path %q, want %q", where, kind, p.HTTPGet.Path, path))
	}
	if got := resolvePort(c, p.HTTPGet.Port.String()); got != healthPort {
		*errs = append(*errs, fmt.Errorf("%s: %s probe port %s is not the health port %d", where, kind, p.HTTPGet.Port.String(), healthPort))
	}
}

func checkScaledObject(s *Set, so *ScaledObject) []error {
	var errs []error
	fail := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("ScaledObject "+so.Name+": "+format, a...))
	}
	sp := so.Spec
	if sp.MinReplicaCount == nil || *sp.MinReplicaCount < 1 {
		fail("minReplicaCount must be set and ≥ 1 (an idle Temporal queue's backlog reads zero)")
	}
	if sp.IdleReplicaCount != nil && *sp.IdleReplicaCount < 1 {
		fail("idleReplicaCount %d would scale the workers to zero", *sp.IdleReplicaCount)
	}
	if sp.MaxReplicaCount == nil || (sp.MinReplicaCount != nil && *sp.MaxReplicaCount < *sp.MinReplicaCount) {
		fail("maxReplicaCount must be set and ≥ minReplicaCount")
	}
	if sp.ScaleTargetRef == nil {
		fail("no scaleTargetRef")
	} else {
		t := sp.ScaleTargetRef
		if (t.Kind != "" && t.Kind != "Deployment") || (t.APIVersion != "" && t.APIVersion != "apps/v1") {
			fail("scaleTargetRef %s/%s is not an apps/v1 Deployment", t.APIVersion, t.Kind)
		}
		if !hasDeployment(s, t.Name) {
			fail("scaleTargetRef names Deployment %q, which is not rendered", t.Name)
		}
	}
	if len(sp.Triggers) == 0 {
		fail("no triggers")
	}
	for i, tr := range sp.Triggers {
		if tr.Type != "temporal" {
			fail("trigger %d has type %q, want temporal", i, tr.Type)
			continue
		}
		for _, k := range []string{"endpoint", "taskQueue", "targetQueueSize"} {
			if tr.Metadata[k] == "" {
				fail("temporal trigger without %s", k)
			}
		}
		known := map[string]bool{"endpoint": true, "endpointFromEnv": true, "namespace": true, "taskQueue": true,
			"targetQueueSize": true, "activationTargetQueueSize": true, "queueTypes": true, "buildId": true,
			"workerDeploymentName": true, "workerDeploymentBuildId": true, "selectAllActive": true,
			"selectUnversioned": true, "minConnectTimeout": true, "unsafeSsl": true, "tlsServerName": true}
		for k := range tr.Metadata {
			if !known[k] {
				fail("temporal trigger metadata %q is not a field of KEDA's temporal scaler", k)
			}
		}
		if n, err := strconv.Atoi(tr.Metadata["targetQueueSize"]); err != nil || n < 1 {
			fail("targetQueueSize %q must be a positive integer", tr.Metadata["targetQueueSize"])
		}
		if v, ok := tr.Metadata["activationTargetQueueSize"]; ok {
			if n, err := strconv.Atoi(v); err != nil || n < 0 {
				fail("activationTargetQueueSize %q must be a non-negative integer", v)
			}
		}
		for _, q := range strings.Split(tr.Metadata["queueTypes"], ",") {
			if q != "" && q != "workflow" && q != "activity" && q != "nexus" {
				fail("queueTypes entry %q (workflow, activity, nexus)", q)
			}
		}
		if ref := tr.AuthenticationRef; ref != nil && (ref.Kind == "" || ref.Kind == "TriggerAuthentication") {
			found := false
			for _, ta := range s.TriggerAuths {
				found = found || ta.Name == ref.Name
			}
			if !found {
				fail("authenticationRef %q names no rendered TriggerAuthentication", ref.Name)
			}
		}
	}
	return errs
}

func checkJob(s *Set, j *batchv1.Job) []error {
	where := "Job " + j.Name
	pod := &j.Spec.Template.Spec
	errs := checkPod(where, pod, true)
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(where+": "+format, a...)) }
	if pod.RestartPolicy != corev1.RestartPolicyNever && pod.RestartPolicy != corev1.RestartPolicyOnFailure {
		fail("restartPolicy %q", pod.RestartPolicy)
	}
	for _, c := range pod.Containers {
		args := strings.Join(c.Args, " ")
		if !strings.Contains(args, "workflow start") {
			continue
		}
		a := flags(c.Args)
		if a["type"] != "QuantizeModel" {
			fail("starts workflow type %q, want QuantizeModel", a["type"])
		}
		if a["task-queue"] == "" {
			fail("no --task-queue")
		}
		in := a["input-file"]
		if in == "" {
			fail("no --input-file")
			continue
		}
		cm, key := configMapFile(pod, &c, in)
		if cm == "" {
			fail("--input-file %s is not in a mounted ConfigMap", in)
			continue
		}
		var data string
		found := false
		for _, m := range s.ConfigMaps {
			if m.Name == cm {
				data, found = m.Data[key]
			}
		}
		if !found {
			fail("ConfigMap %s with key %s (the --input-file) is not rendered", cm, key)
			continue
		}
		var run RunInput
		dec := json.NewDecoder(bytes.NewReader([]byte(data)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&run); err != nil {
			fail("run.json: %v", err)
			continue
		}
		if !strings.HasPrefix(run.Model, "s3://") || !strings.HasPrefix(run.Output, "s3://") || run.Recipe == "" {
			fail("run.json needs model and output s3:// locations and a recipe: %+v", run)
		}
		if run.Rotation != nil && run.Rotation.Kind != "none" && run.Rotation.Kind != "hadamard" {
			fail("run.json rotation kind %q", run.Rotation.Kind)
		}
	}
	return errs
}

// worker is the container whose first argument is "worker".
func worker(pod *corev1.PodSpec) *corev1.Container {
	for i := range pod.Containers {
		if c := &pod.Containers[i]; len(c.Args) > 0 && c.Args[0] == "worker" {
			return c
		}
	}
	return nil
}

// flags parses --name=value and --name value arguments.
func flags(args []string) map[string]string {
	m := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "--") {
			continue
		}
		a = strings.TrimPrefix(a, "--")
		if k, v, ok := strings.Cut(a, "="); ok {
			m[k] = v
		} else if i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
			m[a] = args[i+1]
			i++
		} else {
			m[a] = "true"
		}
	}
	return m
}

// port is the port of a ":9090" or "host:9090" address (0 if none).
func port(addr string) int {
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		return 0
	}
	n, _ := strconv.Atoi(addr[i+1:])
	return n
}

func resolvePort(c *corev1.Container, p string) int {
	if n, err := strconv.Atoi(p); err == nil {
		return n
	}
	for _, cp := range c.Ports {
		if cp.Name == p {
			return int(cp.ContainerPort)
		}
	}
	return -1
}

func exposes(c *corev1.Container, p int) bool {
	for _, cp := range c.Ports {
		if int(cp.ContainerPort) == p {
			return true
		}
	}
	return false
}

func fromSecret(c *corev1.Container, name string) bool {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value == "" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil &&
				e.ValueFrom.SecretKeyRef.Name != "" && e.ValueFrom.SecretKeyRef.Key != ""
		}
	}
	for _, ef := range c.EnvFrom {
		if ef.SecretRef != nil && ef.SecretRef.Name != "" {
			return true
		}
	}
	return false
}

func volume(pod *corev1.PodSpec, name string) *corev1.Volume {
	for i := range pod.Volumes {
		if pod.Volumes[i].Name == name {
			return &pod.Volumes[i]
		}
	}
	return nil
}

func mountsEmptyDir(pod *corev1.PodSpec, c *corev1.Container, path string) bool {
	for _, m := range c.VolumeMounts {
		if m.MountPath == path {
			v := volume(pod, m.Name)
			return v != nil && v.EmptyDir != nil
		}
	}
	return false
}

func underSecretMount(pod *corev1.PodSpec, c *corev1.Container, file string) bool {
	for _, m := range c.VolumeMounts {
		if strings.HasPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/") {
			v := volume(pod, m.Name)
			return v != nil && v.Secret != nil && v.Secret.SecretName != "" && m.ReadOnly
		}
	}
	return false
}

// configMapFile returns the ConfigMap and key a file path inside the
// container comes from.
func configMapFile(pod *corev1.PodSpec, c *corev1.Container, file string) (string, string) {
	for _, m := range c.VolumeMounts {
		dir := strings.TrimSuffix(m.MountPath, "/") + "/"
		if !strings.HasPrefix(file, dir) {
			continue
		}
		v := volume(pod, m.Name)
		if v == nil || v.ConfigMap == nil {
			return "", ""
		}
		rel := strings.TrimPrefix(file, dir)
		for _, it := range v.ConfigMap.Items {
			if it.Path == rel {
				return v.ConfigMap.Name, it.Key
			}
		}
		return v.ConfigMap.Name, rel
	}
	return "", ""
}

func hasCap(caps []corev1.Capability, want corev1.Capability) bool {
	for _, c := range caps {
		if c == want {
			return true
		}
	}
	return false
}

func hasString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func hasSA(s *Set, name string) bool {
	for _, sa := range s.ServiceAccounts {
		if sa.Name == name {
			return true
		}
	}
	return false
}

func hasDeployment(s *Set, name string) bool {
	for _, d := range s.Deployments {
		if d.Name == name {
			return true
		}
	}
	return false
}

func hasPDB(s *Set, d *appsv1.Deployment) bool {
	for _, p := range s.PDBs {
		if p.Spec.Selector == nil {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err == nil && !sel.Empty() && sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			return true
		}
	}
	return false
}

func scaledObjectFor(s *Set, deployment string) *ScaledObject {
	for _, so := range s.ScaledObjects {
		if so.Spec.ScaleTargetRef != nil && so.Spec.ScaleTargetRef.Name == deployment {
			return so
		}
	}
	return nil
}
