package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ohms-project/adaptq/internal/testenv"
	"github.com/ohms-project/adaptq/safetensors"
	"github.com/ohms-project/adaptq/shards"
	"github.com/ohms-project/adaptq/store"
	"github.com/ohms-project/adaptq/synth"
)

// runMainEnv makes the test binary run the CLI's main instead of the
// tests, so that the tests below run the real command (exit status,
// stderr) as a separate process.
const runMainEnv = "ADAPTQ_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// cliResult is what one run of the CLI process gave.
type cliResult struct {
	code   int
	stdout string
	stderr string
	took   time.Duration
}

// runProcess runs the CLI as a process with args and extra environment
// (each "K=V"; "K=" removes K).
func runProcess(t *testing.T, env []string, args ...string) cliResult {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	drop := map[string]bool{}
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		drop[k] = true
	}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !drop[k] {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for _, kv := range env {
		if !strings.HasSuffix(kv, "=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, runMainEnv+"=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err = cmd.Run()
	took := time.Since(start)
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return cliResult{code: code, stdout: out.String(), stderr: errb.String(), took: took}
}

// noS3Credentials is an environment without S3 credentials whose IAM
// lookup fails at once (the container credentials endpoint is a closed
// port, so no instance metadata service is asked), with the endpoint on a
// closed loopback port.
func noS3Credentials(t *testing.T) []string {
	return []string{"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_SESSION_TOKEN=", "MINIO_ROOT_USER=", "MINIO_ROOT_PASSWORD=",
		"MINIO_ACCESS_KEY=", "MINIO_SECRET_KEY=", "AWS_WEB_IDENTITY_TOKEN_FILE=", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI=http://" + testenv.FreeAddr(t) + "/", "ADAPTQ_S3_ENDPOINT=http://" + testenv.FreeAddr(t)}
}

// badArgCase is one row of the bad-argument table in docs/USAGE.md.
type badArgCase struct {
	name string
	args []string // after "quantize"; --out is added
	env  []string
	line string // the line printed; {out} and {dir} are replaced
	code int
}

// badArgCases are the rows of the table. dir holds the test's files.
func badArgCases(t *testing.T, dir string) []badArgCase {
	model, _ := filepath.Abs(fixtureF32)
	unknownArch, _ := filepath.Abs("../../testdata/bad/config-unknown-architecture")
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	short := write("short.txt", "Once upon a time, there was a cat.\n")
	binary := write("binary.txt", "Once upon a time\xff\xfe\x00")
	write("a-file", "not a folder\n")
	emptyImatrix := write("empty.imatrix", "")
	empty := write("empty.txt", "")
	// A GGUF imatrix cut after its header, a legacy .dat one whose first
	// entry names 2^31-1 bytes, and a file in neither format.
	truncGGUF := write("truncated.gguf", "GGUF\x03\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00\x00")
	lyingDat := write("lying.dat", "\x01\x00\x00\x00\xff\xff\xff\x7fblk.0.attn_q.weight")
	textImatrix := write("notes.imatrix", "these are not importance sums\n")
	text, _ := filepath.Abs(fixtureText)
	_, unknownRecipe := shards.NamedRecipe("q9_k") // its text lists the recipes
	// A checkpoint whose rows all fit IQ2_XXS's 256-blocks (the fixture's
	// fall back to IQ4_NL, which needs no importance matrix).
	m256 := filepath.Join(dir, "m256")
	if st, err := store.NewLocal(m256); err != nil {
		t.Fatal(err)
	} else if raw, cfg, err := synth.ShapeConfig(`{"model_type":"llama","hidden_size":256,"intermediate_size":512,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":4,"vocab_size":512,"tie_word_embeddings":false}`, 0); err != nil {
		t.Fatal(err)
	} else if err := synth.Write(context.Background(), st, raw, cfg, synth.Options{DType: safetensors.BF16, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if tok, err := os.ReadFile(filepath.Join(model, "tokenizer.json")); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(filepath.Join(m256, "tokenizer.json"), tok, 0o644); err != nil {
		t.Fatal(err)
	}
	return []badArgCase{
		{"missing model (issue 19)", []string{"--model", "/nonexistent"}, nil,
			"adaptq quantize: /nonexistent: does not exist; give --model the folder (file:// or s3:// location) holding config.json and the *.safetensors files", 2},
		{"model folder without config.json", []string{"--model", dir}, nil,
			"adaptq quantize: {dir}: holds no config.json: no checkpoint here; give --model the folder (file:// or s3:// location) holding config.json and the *.safetensors files", 2},
		{"model given as its safetensors file", []string{"--model", filepath.Join(model, "model.safetensors")}, nil,
			"adaptq quantize: " + model + "/model.safetensors: is a file, not a checkpoint folder; give --model the folder (file:// or s3:// location) holding config.json and the *.safetensors files", 2},
		{"unknown architecture", []string{"--model", unknownArch}, nil,
			"adaptq quantize: " + unknownArch + "/config.json: model_type \"gpt_neox\" is not supported (adaptq reads llama, mistral, qwen2, qwen3); give --model a checkpoint adaptq reads (`adaptq inspect <location>` checks one)", 2},
		{"missing text at the root (issue 19)", []string{"--model", model, "--text", "/nonexistent.txt"}, nil,
			"adaptq quantize: /nonexistent.txt: not found; give --text an existing UTF-8 text file", 2},
		{"missing text", []string{"--model", model, "--text", filepath.Join(dir, "missing.txt")}, nil,
			"adaptq quantize: {dir}/missing.txt: not found; give --text an existing UTF-8 text file", 2},
		{"text shorter than a window", []string{"--model", model, "--text", short}, nil,
			"adaptq quantize: " + short + ": 12 tokens, less than one window of 256 (protocol full needs 255); give a longer text or a smaller --ctx", 2},
		{"text not UTF-8", []string{"--model", model, "--text", binary}, nil,
			"adaptq quantize: " + binary + ": not UTF-8 text (invalid byte 0xff at byte 16); give --text a UTF-8 text file", 2},
		{"unwritable output", []string{"--model", model, "--out", filepath.Join(dir, "a-file", "out")}, nil,
			"adaptq quantize: {dir}/a-file/out: a part of the path is a file, not a folder; give --out a location you can write", 2},
		{"unknown recipe", []string{"--model", model, "--recipe", "q9_k"}, nil,
			"adaptq quantize: --recipe: " + unknownRecipe.Error() + "; choose a recipe adaptq knows (`adaptq quantize -h` lists them)", 2},
		{"i-quant recipe without an importance matrix", []string{"--model", m256, "--recipe", "iq2_xxs"}, nil,
			"adaptq quantize: --recipe: recipe iq2_xxs needs an importance matrix (blk.0.attn_q.weight would be IQ2_XXS); give --imatrix <file> or --calib-text <file>", 2},
		{"--heads without --rotate", []string{"--model", model, "--heads"}, nil,
			"adaptq quantize: --heads: rotates each head's value/output pair of a rotated model, but --rotate is not hadamard; add --rotate hadamard or drop --heads", 2},
		{"--protocol without --text", []string{"--model", model, "--protocol", "llama.cpp"}, nil,
			"adaptq quantize: --text: not given, but the evaluation options ask for an evaluation; give --text a text file, or drop --ctx and --protocol", 2},
		{"--seed without --rotate", []string{"--model", model, "--seed", "7"}, nil,
			"adaptq quantize: --seed: only a rotation uses a seed, but --rotate is none; add --rotate hadamard or drop --seed", 2},
		{"missing imatrix", []string{"--model", model, "--imatrix", filepath.Join(dir, "missing.imatrix")}, nil,
			"adaptq quantize: {dir}/missing.imatrix: not found; give --imatrix an importance-matrix file (llama-imatrix or `adaptq calibrate` writes one)", 2},
		{"empty imatrix", []string{"--model", model, "--imatrix", emptyImatrix}, nil,
			"adaptq quantize: " + emptyImatrix + ": is empty; give --imatrix an importance-matrix file (llama-imatrix or `adaptq calibrate` writes one)", 2},
		{"empty text", []string{"--model", model, "--text", empty}, nil,
			"adaptq quantize: " + empty + ": is empty; give --text an existing UTF-8 text file", 2},
		{"empty calibration text", []string{"--model", model, "--calib-text", empty}, nil,
			"adaptq quantize: " + empty + ": is empty; give --calib-text an existing UTF-8 text file", 2},
		{"calibration text not UTF-8", []string{"--model", model, "--calib-text", binary}, nil,
			"adaptq quantize: " + binary + ": not UTF-8 text (invalid byte 0xff at byte 16); give --calib-text a UTF-8 text file", 2},
		{"calibration text shorter than a window", []string{"--model", model, "--calib-text", short}, nil,
			"adaptq quantize: " + short + ": 12 tokens, less than one window of 512 (protocol llama.cpp needs 511); give a longer text or a smaller --calib-ctx", 2},
		{"truncated GGUF imatrix", []string{"--model", model, "--imatrix", truncGGUF}, nil,
			"adaptq quantize: " + truncGGUF + ": not a usable importance matrix: imatrix: gguf: at offset 8: tensor count 2 exceeds what the 4 bytes left can hold; give --imatrix an importance-matrix file (llama-imatrix or `adaptq calibrate` writes one)", 2},
		{"legacy imatrix with a lying name length", []string{"--model", model, "--imatrix", lyingDat}, nil,
			"adaptq quantize: " + lyingDat + ": not a usable importance matrix: imatrix (legacy): entry 0: name length 2147483647 (want 1 to 4096); give --imatrix an importance-matrix file (llama-imatrix or `adaptq calibrate` writes one)", 2},
		{"imatrix in neither format", []string{"--model", model, "--imatrix", textImatrix}, nil,
			"adaptq quantize: " + textImatrix + ": not a usable importance matrix: imatrix (legacy): entry count 1936025716 is out of range for a file of 30 bytes; give --imatrix an importance-matrix file (llama-imatrix or `adaptq calibrate` writes one)", 2},
		{"calibration on the evaluation text", []string{"--model", model, "--text", text, "--calib-text", text}, nil,
			"adaptq quantize: " + text + ": is also the evaluation text: an importance collected on the text the model is measured on flatters it; give --calib-text a text disjoint from --text", 2},
		{"--concurrency out of range", []string{"--model", model, "--concurrency", "5000"}, nil,
			"adaptq quantize: usage: --concurrency 5000: want 1 to 1000 shards in flight", 2},
		{"--heartbeat-seconds negative", []string{"--model", model, "--heartbeat-seconds", "-1"}, nil,
			"adaptq quantize: usage: --heartbeat-seconds -1: want 1 to 86400, or 0 for the default", 2},
		{"S3 location without credentials", []string{"--model", "s3://models/stories260k"}, noS3Credentials(t),
			"adaptq quantize: s3://models/stories260k: no S3 credentials: AWS_ACCESS_KEY_ID is not set and no IAM role gave any; export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and ADAPTQ_S3_ENDPOINT for MinIO) where adaptq runs", 2},
		{"unreachable Temporal", []string{"--model", model, "--temporal", "{closed}"}, nil,
			"adaptq quantize: Temporal at {closed}: unreachable (connection refused); start a Temporal server there (`adaptq dev --port <port>`), correct --temporal, or leave it out to run an embedded server", 1},
	}
}

// TestBadArguments runs the real CLI (a process, on the embedded default)
// with each bad argument of the table: it prints exactly one line, exits
// with the table's status within seconds, and writes nothing to the
// output — no shard, no log, not even the folder.
func TestBadArguments(t *testing.T) {
	dir := t.TempDir()
	closed := testenv.FreeAddr(t)
	for _, tc := range badArgCases(t, dir) {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			args := append([]string{"quantize", "--dev-port", "-1"}, tc.args...)
			if !contains(tc.args, "--out") {
				args = append(args, "--out", out)
			}
			for i := range args {
				args[i] = strings.ReplaceAll(args[i], "{closed}", closed)
			}
			r := runProcess(t, tc.env, args...)
			want := strings.NewReplacer("{dir}", dir, "{out}", out, "{closed}", closed).Replace(tc.line) + "\n"
			if r.stderr != want || r.code != tc.code {
				t.Errorf("exit %d, stderr\n%q\nwant exit %d and\n%q", r.code, r.stderr, tc.code, want)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q", r.stdout)
			}
			// A loose sanity bound: the checks take well under a second
			// on an idle machine; this one is shared.
			if r.took > 30*time.Second {
				t.Errorf("took %v to fail", r.took)
			}
			if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the output %s was created (%v): %v", out, err, listFiles(t, out))
			}
			t.Logf("exit %d after %.2fs: %s", r.code, r.took.Seconds(), strings.TrimSpace(r.stderr))
		})
	}
}

// TestBadArgumentsOnWorker leaves the checks to PlanModel
// (--local-checks=false, as for a run started with `temporal workflow
// start`): the run fails at planning, the CLI prints the same line as the
// local checks, from the Problem the worker sent, and exits 2; no shard
// is scheduled, no SDK log line reaches the terminal.
func TestBadArgumentsOnWorker(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range badArgCases(t, dir) {
		switch tc.name {
		case "missing model (issue 19)", "unknown architecture", "text shorter than a window", "missing text at the root (issue 19)", "missing imatrix",
			"i-quant recipe without an importance matrix":
		default:
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			args := append([]string{"quantize", "--dev-port", "-1", "--local-checks=false", "--out", out}, tc.args...)
			r := runProcess(t, tc.env, args...)
			want := strings.NewReplacer("{dir}", dir, "{out}", out).Replace(tc.line)
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if last := lines[len(lines)-1]; last != want || r.code != tc.code {
				t.Errorf("exit %d, last line\n%q\nwant exit %d and\n%q\nstderr:\n%s", r.code, last, tc.code, want, r.stderr)
			}
			for _, l := range lines {
				if strings.Contains(l, "ERR") || strings.Contains(l, "component=") {
					t.Errorf("a log line on the terminal: %q", l)
				}
			}
			if r.took > 60*time.Second {
				t.Errorf("took %v to fail", r.took)
			}
			for _, f := range listFiles(t, out) {
				// Besides INCOMPLETE and the log: the embedded server's
				// database (the failed run's history).
				if rel, _ := filepath.Rel(out, f); rel != "INCOMPLETE" && rel != filepath.FromSlash(LogFile) && filepath.Dir(rel) != stateFolder {
					t.Errorf("the failed run wrote %s", rel)
				}
			}
			// The SDK's line about the failed activity went to the log file.
			if b, err := os.ReadFile(filepath.Join(out, LogFile)); err != nil || !strings.Contains(string(b), "ActivityType=PlanModel") {
				t.Errorf("log file: %v\n%s", err, b)
			}
			t.Logf("exit %d after %.2fs (embedded server start included): %s", r.code, r.took.Seconds(), lines[len(lines)-1])
		})
	}
}

// TestVerboseAndJSONLogs: with -v the SDK's lines and Temporal's whole
// error chain go to stderr, with --log-format json the lines are JSON; the
// last line is the same one line either way, and no log file is written.
func TestVerboseAndJSONLogs(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.txt")
	want := "adaptq quantize: " + missing + ": not found; give --text an existing UTF-8 text file"
	for _, tc := range []struct {
		flag     string
		contains []string
	}{
		{"-v", []string{"ActivityType=PlanModel", "adaptq quantize: error chain: workflow execution error", "(type: BadInput, retryable: false)"}},
		{"--log-format=json", []string{`"ActivityType":"PlanModel"`, `"level":"error"`}},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			r := runProcess(t, nil, "quantize", "--dev-port", "-1", "--local-checks=false", tc.flag, "--model", fixtureF32, "--out", out, "--text", missing)
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if r.code != 2 || lines[len(lines)-1] != want {
				t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
			}
			for _, w := range tc.contains {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
			if _, err := os.Stat(filepath.Join(out, LogFile)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a log file was written: %v", err)
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// listFiles lists the files under dir (for failure messages).
func listFiles(t *testing.T, dir string) []string {
	var files []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	return files
}
