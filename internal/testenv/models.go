package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// ModelsDir is the folder scripts/models.sh fetches the real models into:
// $ADAPTQ_MODELS_DIR, else <repo>/.tools/models.
func ModelsDir() (string, error) {
	if d := os.Getenv("ADAPTQ_MODELS_DIR"); d != "" {
		return d, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ".tools", "models"), nil
}

// FindRealModel returns the path of a real model's GGUF file fetched by
// scripts/models.sh (name as in testdata/models/REAL.md, e.g.
// "smollm2-135m"): the one .gguf file in <models dir>/<name>/ whose
// ".ok" marker says its SHA-256 was checked.
func FindRealModel(name string) (string, error) {
	dir, err := ModelsDir()
	if err != nil {
		return "", err
	}
	matches, err := filepath.Glob(filepath.Join(dir, name, "*.gguf"))
	if err != nil {
		return "", err
	}
	var found []string
	for _, m := range matches {
		if _, err := os.Stat(m + ".ok"); err == nil {
			found = append(found, m)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("real model %s not found in %s (bash scripts/models.sh %s fetches it)", name, filepath.Join(dir, name), name)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("real model %s: %d checked .gguf files in %s, want one", name, len(found), filepath.Join(dir, name))
}

// RealModel returns the path of a real model's GGUF file (see
// FindRealModel), or fails the test in CI (CI=true) and skips it
// elsewhere when the model has not been fetched.
func RealModel(tb testing.TB, name string) string {
	tb.Helper()
	p, err := FindRealModel(name)
	if err != nil {
		Missing(tb, err.Error())
	}
	return p
}
