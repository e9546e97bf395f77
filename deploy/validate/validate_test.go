package validate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRendered checks the manifests scripts/helm-check.sh rendered: each
// subdirectory of $ADAPTQ_RENDERED is one `helm template` output (one set
// of values). Without ADAPTQ_RENDERED the test skips, except under CI=true,
// where it fails: CI must never pass without having checked the chart.
func TestRendered(t *testing.T) {
	root := os.Getenv("ADAPTQ_RENDERED")
	if root == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("ADAPTQ_RENDERED is not set: run scripts/helm-check.sh, which renders the chart and then this test")
		}
		t.Skip("ADAPTQ_RENDERED is not set (scripts/helm-check.sh sets it)")
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, filepath.Join(root, e.Name()))
		}
	}
	if len(dirs) == 0 {
		dirs = []string{root}
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			set, err := LoadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if set.Count() == 0 {
				t.Fatalf("%s: no objects", dir)
			}
			for _, e := range Check(set) {
				t.Error(e)
			}
			t.Logf("%s: %d objects: %d Deployments, %d ScaledObjects, %d PDBs, %d Jobs, %d ConfigMaps, %d ServiceAccounts, %d Services, %d ServiceMonitors, %d TriggerAuthentications",
				filepath.Base(dir), set.Count(), len(set.Deployments), len(set.ScaledObjects), len(set.PDBs), len(set.Jobs),
				len(set.ConfigMaps), len(set.ServiceAccounts), len(set.Services), len(set.ServiceMonitors), len(set.TriggerAuths))
		})
	}
}

func loadGood(t *testing.T) string {
	b, err := os.ReadFile("testdata/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func checkText(t *testing.T, text string) (decodeErr error, errs []error) {
	t.Helper()
	s := &Set{Name: "test"}
	if err := s.Add("test.yaml", []byte(text)); err != nil {
		return err, nil
	}
	return nil, Check(s)
}

// TestBaselinePasses: the stored rendering satisfies every check, so each
// failure in TestCheckRejects comes from its one mutation.
func TestBaselinePasses(t *testing.T) {
	derr, errs := checkText(t, loadGood(t))
	if derr != nil {
		t.Fatal(derr)
	}
	for _, e := range errs {
		t.Error(e)
	}
}

// TestCheckRejects mutates the valid baseline in one place per case and
// requires the checker to reject it, naming the problem: the checks are
// not vacuous.
func TestCheckRejects(t *testing.T) {
	good := loadGood(t)
	cases := []struct {
		name, old, new, want string
	}{
		{"grace equals stop timeout", "terminationGracePeriodSeconds: 90", "terminationGracePeriodSeconds: 60", "not longer than --stop-timeout"},
		{"grace below stop timeout", "--stop-timeout=60s", "--stop-timeout=5m", "not longer than --stop-timeout"},
		{"no grace period", "      terminationGracePeriodSeconds: 90\n", "", "terminationGracePeriodSeconds not set"},
		{"unknown field", "terminationGracePeriodSeconds: 90", "terminationGracePeriod: 90", "unknown field"},
		{"misspelt container field", "          imagePullPolicy: IfNotPresent", "          imagePullPolicyy: IfNotPresent", "unknown field"},
		{"root filesystem writable", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "readOnlyRootFilesystem is not true"},
		{"runs as root", "runAsNonRoot: true", "runAsNonRoot: false", "runAsNonRoot is not true"},
		{"privilege escalation", "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true", "allowPrivilegeEscalation"},
		{"capabilities kept", "              - ALL", "              - NET_RAW", "drop ALL"},
		{"no memory limit", "              memory: 19Gi\n            requests:", "            requests:", "must both set memory"},
		{"literal secret", "            - name: AWS_SECRET_ACCESS_KEY\n              valueFrom:\n                secretKeyRef:\n                  name: adaptq-s3\n                  key: AWS_SECRET_ACCESS_KEY\n",
			"            - name: AWS_SECRET_ACCESS_KEY\n              value: hunter2\n", "secretKeyRef"},
		{"secret object", "---\n# Source: adaptq/templates/serviceaccount.yaml", "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s3\nstringData:\n  AWS_SECRET_ACCESS_KEY: x\n---\n# Source: adaptq/templates/serviceaccount.yaml", "renders a Secret"},
		{"no liveness probe", "          livenessProbe:\n            httpGet:\n              path: /healthz\n              port: health\n            initialDelaySeconds: 5\n            periodSeconds: 10\n            timeoutSeconds: 5\n            failureThreshold: 6\n", "", "no liveness probe"},
		{"readiness on liveness path", "              path: /readyz", "              path: /healthz", "readiness probe path"},
		{"scale to zero", "minReplicaCount: 1", "minReplicaCount: 0", "minReplicaCount"},
		{"cpu trigger", "    - type: temporal", "    - type: cpu", "want temporal"},
		{"unquoted trigger metadata", `targetQueueSize: "2"`, `targetQueueSize: 2`, "strict decode"},
		{"unknown scaler field", `        activationTargetQueueSize: "0"`, `        activationQueueSize: "0"`, "not a field of KEDA's temporal scaler"},
		{"wrong task queue", `        taskQueue: "adaptq"`, `        taskQueue: "other"`, "but the worker polls"},
		{"keda unknown spec field", "  pollingInterval: 15", "  pollingIntervall: 15", "unknown field"},
		{"tls outside secret", "            - name: temporal-tls\n              mountPath: /etc/adaptq/temporal-tls\n              readOnly: true\n", "", "not in a volume mounted from a Secret"},
		{"run input typo", `"recipe": "q4_k"`, `"recipee": "q4_k"`, "unknown field"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(good, tc.old) {
				t.Fatalf("baseline has no %q: update the case", tc.old)
			}
			bad := strings.Replace(good, tc.old, tc.new, 1)
			derr, errs := checkText(t, bad)
			var all []string
			if derr != nil {
				all = append(all, derr.Error())
			}
			for _, e := range errs {
				all = append(all, e.Error())
			}
			if len(all) == 0 {
				t.Fatalf("accepted")
			}
			joined := strings.Join(all, "\n")
			if !strings.Contains(joined, tc.want) {
				t.Fatalf("rejected, but without %q:\n%s", tc.want, joined)
			}
		})
	}
}
