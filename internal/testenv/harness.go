package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// LlamaLibDir is where node-llama-cpp's prebuilt CPU libraries are, relative
// to the node_modules folder (installed by `bash scripts/tools.sh llama`).
const LlamaLibDir = "@node-llama-cpp/linux-x64/bins/linux-x64"

// LlamaLibs returns the folder of llama.cpp's prebuilt libraries:
// $ADAPTQ_NODE_MODULES/<LlamaLibDir>, else under <repo>/.tools/npm/node_modules.
func LlamaLibs() (string, error) {
	modules := os.Getenv("ADAPTQ_NODE_MODULES")
	if modules == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		modules = filepath.Join(root, ".tools", "npm", "node_modules")
	}
	dir := filepath.Join(modules, LlamaLibDir)
	if _, err := os.Stat(filepath.Join(dir, "libggml-base.so")); err != nil {
		return "", fmt.Errorf("llama.cpp's libraries not found in %s (install them with `bash scripts/tools.sh llama`)", dir)
	}
	return dir, nil
}

// BuildHarness compiles a C or C++ test harness of the repository (src,
// relative to the root) with the named compiler ("gcc", "g++") and flags,
// once per content of the source, into the git-ignored .tools/cache/<name>
// folder, and returns the binary's path. A missing compiler is reported as
// an error wrapping exec.ErrNotFound.
func BuildHarness(name, src, compiler string, flags ...string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	code, err := os.ReadFile(filepath.Join(root, src))
	if err != nil {
		return "", fmt.Errorf("harness source: %w", err)
	}
	h := sha256.New()
	h.Write(code)
	h.Write([]byte(compiler + "\x00" + strings.Join(flags, "\x00")))
	dir := filepath.Join(root, ".tools", "cache", name, hex.EncodeToString(h.Sum(nil))[:16])
	bin := filepath.Join(dir, name)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	cc, err := exec.LookPath(compiler)
	if err != nil {
		return "", fmt.Errorf("%s builds %s: %w", compiler, src, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, name+".tmp*")
	if err != nil {
		return "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	args := append([]string{"-O2", "-o", tmp.Name(), filepath.Join(root, src)}, flags...)
	if out, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("compiling %s: %v\n%s", src, err, out)
	}
	if err := os.Rename(tmp.Name(), bin); err != nil {
		return "", err
	}
	return bin, nil
}
