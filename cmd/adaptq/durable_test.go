package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/converter"

	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/safetensors"
	"github.com/ohms-project/adaptq/store"
	"github.com/ohms-project/adaptq/synth"
	"github.com/ohms-project/adaptq/workers"
)

// TestQuantizeKillResume: kill -9 of `adaptq quantize` on the embedded
// default after some shards, then the same command again: it attaches to
// the same workflow (its database in <out>/.adaptq-state), finishes it
// without redoing a shard that was finished at the kill, and the GGUF is
// bit-identical to an undisturbed run's.
func TestQuantizeKillResume(t *testing.T) {
	if testing.Short() {
		t.Skip("quantizes a synthetic 8-layer model three times")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	modelDir := t.TempDir()
	src, _ := store.NewLocal(modelDir)
	raw, cfg, err := synth.ShapeConfig(`{"model_type":"llama","hidden_size":512,"intermediate_size":1536,"num_hidden_layers":8,"num_attention_heads":8,"num_key_value_heads":4,"vocab_size":512}`, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := synth.Write(ctx, src, raw, cfg, synth.Options{DType: safetensors.BF16, Seed: 7}); err != nil {
		t.Fatal(err)
	}
	tok, _ := os.ReadFile(filepath.Join(fixtureF32, "tokenizer.json"))
	if err := os.WriteFile(filepath.Join(modelDir, "tokenizer.json"), tok, 0o644); err != nil {
		t.Fatal(err)
	}
	args := func(out string) []string {
		return []string{"quantize", "--model", modelDir, "--out", out, "--recipe", "q4_k", "--concurrency", "1",
			"--heartbeat-seconds", "3", "--dev-port", "-1", "--ui-port", "-1"}
	}

	refOut := t.TempDir()
	start := time.Now()
	ref := runProcess(t, nil, args(refOut)...)
	if ref.code != 0 {
		t.Fatalf("undisturbed run: exit %d\n%s", ref.code, ref.stderr)
	}
	refWall := time.Since(start)
	refSHA := fileSHA256(t, filepath.Join(refOut, "model.gguf"))

	// The disturbed run: kill -9 once three shards are finished.
	out := t.TempDir()
	exe, _ := os.Executable()
	cmd := exec.Command(exe, args(out)...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	var stderr1 bytes.Buffer
	cmd.Stderr = &stderr1
	start = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	const killAfter = 3
	var atKill map[string]time.Time
	for {
		atKill = shardFiles(t, out)
		if len(atKill) >= killAfter {
			break
		}
		if time.Since(start) > 5*time.Minute {
			cmd.Process.Kill()
			t.Fatalf("no %d shards in 5 minutes\n%s", killAfter, stderr1.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	killed := time.Now()
	_ = cmd.Wait()
	atKill = shardFiles(t, out) // what the dead process left
	if _, err := os.Stat(filepath.Join(out, "model.gguf")); err == nil {
		t.Fatal("model.gguf exists at the kill: the run ended before it")
	}
	if len(atKill) >= 10 {
		t.Fatalf("all %d shards were written before the kill", len(atKill))
	}

	again := runProcess(t, nil, args(out)...)
	if again.code != 0 {
		t.Fatalf("rerun after kill -9: exit %d\n%s", again.code, again.stderr)
	}
	total := time.Since(start)
	if !strings.Contains(again.stderr, "is running") || !strings.Contains(again.stderr, "attached to it") {
		t.Errorf("the rerun did not attach to the running workflow:\n%s", again.stderr)
	}
	if got := fileSHA256(t, filepath.Join(out, "model.gguf")); got != refSHA {
		t.Fatalf("GGUF sha256 %s after kill -9 and rerun, %s undisturbed", got, refSHA)
	}
	after := shardFiles(t, out)
	for name, mt := range atKill {
		if !after[name].Equal(mt) {
			t.Errorf("shard object %s, written before the kill, was rewritten", name)
		}
	}

	// The history, from the state folder's database: which QuantizeShard
	// results were computed (not reused) after the kill?
	dev, err := workers.StartDevServer(ctx, workers.DevServerOptions{Port: -1, NoUI: true, Logger: zerolog.Nop(),
		DBFile: filepath.Join(out, stateFolder, stateDB), SearchAttributes: searchAttributes()})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Stop()
	c, err := workers.Dial(ctx, workers.Config{HostPort: dev.Address()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	id := regexp.MustCompile(`workflow (adaptq-\S+) is running`).FindStringSubmatch(again.stderr)
	if id == nil {
		t.Fatal("no workflow id in the rerun's output")
	}
	it := c.GetWorkflowHistory(ctx, id[1], "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	computed, reused, before := 0, 0, 0
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		a := ev.GetActivityTaskCompletedEventAttributes()
		if a == nil {
			continue
		}
		var rec export.ShardRecord
		if converter.GetDefaultDataConverter().FromPayloads(a.GetResult(), &rec) != nil || rec.Key == "" {
			continue
		}
		switch {
		case ev.GetEventTime().AsTime().Before(killed):
			before++
		case rec.Reused:
			reused++
		default:
			computed++
			if _, ok := atKill[filepath.Base(rec.Key)]; ok {
				t.Errorf("shard %s was finished at the kill and computed again", rec.Shard)
			}
		}
	}
	if before+reused+computed != 10 {
		t.Errorf("%d shard results in the history (%d before the kill, %d reused, %d computed after), want 10", before+reused+computed, before, reused, computed)
	}
	t.Logf("undisturbed %.1fs; kill -9 after %d finished shards (%d of them recorded by the workflow), rerun finished %.1fs after the first start: %d shards reused, %d computed after the kill; GGUF sha256 %s both",
		refWall.Seconds(), len(atKill), before, total.Seconds(), reused, computed, refSHA)
}

// shardFiles lists the finished shards under out/shards, the objects
// (.adqs) whose per-tensor results (.json) are stored too, with the
// objects' modification times.
func shardFiles(t *testing.T, out string) map[string]time.Time {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(out, "shards"))
	m := map[string]time.Time{}
	for _, e := range ents {
		base, ok := strings.CutSuffix(e.Name(), ".adqs")
		if !ok {
			continue
		}
		if _, err := os.Stat(filepath.Join(out, "shards", base+".json")); err != nil {
			continue
		}
		if fi, err := e.Info(); err == nil {
			m[e.Name()] = fi.ModTime()
		}
	}
	return m
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
