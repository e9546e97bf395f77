package workflows

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/ohms-project/adaptq/activities"
	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/gguf"
	"github.com/ohms-project/adaptq/importer"
	"github.com/ohms-project/adaptq/infer"
	"github.com/ohms-project/adaptq/internal/testenv"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/safetensors"
	"github.com/ohms-project/adaptq/shards"
	"github.com/ohms-project/adaptq/store"
	"github.com/ohms-project/adaptq/tokenizer"
)

// TestDistributedIMatrixEqualsSingleProcess: CalibrateModel's imatrix.gguf
// is byte-identical to one in-process collection over the same windows,
// for chunkings of 1, 7 and 20 windows: on the fixture (23 windows of 128)
// and on a real model, SmolLM2-135M imported at F16 (23 short windows of
// 32 tokens of the calibration text, to stay quick).
func TestDistributedIMatrixEqualsSingleProcess(t *testing.T) {
	t.Run("stories260k", func(t *testing.T) {
		full, _ := filepath.Abs("../testdata/text/tinystories-valid-sample.txt")
		checkDistributedIMatrix(t, fixture, full, 128, 23)
	})
	t.Run("smollm2-135m", func(t *testing.T) {
		gg := testenv.RealModel(t, "smollm2-135m")
		ctx := context.Background()
		dir := t.TempDir()
		src, err := store.NewLocal(filepath.Dir(gg))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := importer.Import(ctx, src, filepath.Base(gg), mustLocal(t, dir), importer.Options{DType: safetensors.F16}); err != nil {
			t.Fatal(err)
		}
		text, _ := filepath.Abs("../testdata/text/go-calib.txt")
		checkDistributedIMatrix(t, dir, text, 32, 23)
	})
}

// checkDistributedIMatrix compares CalibrateModel's imatrix.gguf with a
// single in-process collection over the first nwin windows of ctxLen
// tokens of text (llama.cpp protocol), for chunkings of 1, 7 and 20.
func checkDistributedIMatrix(t *testing.T, modelDir, text string, ctxLen, nwin int) {
	ctx := context.Background()
	src, _ := store.NewLocal(modelDir)
	ck, err := model.Open(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(filepath.Join(modelDir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := store.ReadAll(ctx, mustLocal(t, filepath.Dir(text)), filepath.Base(text))
	ids := tok.Encode(string(raw), false)
	n := nwin*ctxLen - 1 + 10
	if len(ids) < n {
		t.Fatalf("%s: %d tokens, want %d", text, len(ids), n)
	}
	cut := filepath.Join(t.TempDir(), "calib.txt")
	writeIDsText(t, tok, ids[:n], cut)
	id32 := make([]int32, n)
	for i := range id32 {
		id32[i] = int32(ids[i])
	}
	bos, ok := activities.BOS(tok, ck.Config)
	if !ok {
		t.Fatalf("%s: no BOS token", modelDir)
	}
	wins, err := infer.Windows(id32, infer.ProtocolLlamaCpp, ctxLen, int32(bos))
	if err != nil || len(wins) != nwin {
		t.Fatalf("%d windows, %v", len(wins), err)
	}
	m, err := infer.LoadModel(ctx, ck)
	if err != nil {
		t.Fatal(err)
	}
	sums, err := m.Calibrate(ctx, wins, infer.CalibOptions{})
	if err != nil {
		t.Fatal(err)
	}
	im, err := sums.IMatrix([]string{cut}, ctxLen)
	if err != nil {
		t.Fatal(err)
	}
	im.Extra = gguf.Metadata{{Key: activities.KeyIMatrixRotation, Value: "none"}}
	var want bytes.Buffer
	if err := gguf.WriteIMatrix(&want, im); err != nil {
		t.Fatal(err)
	}
	for _, chunk := range []int{1, 7, 20} {
		env, _ := newEnv(t)
		env.RegisterWorkflow(CalibrateModel)
		outDir := t.TempDir()
		env.ExecuteWorkflow(CalibrateModel, CalibrateInput{Model: modelDir, Output: outDir,
			Spec: CalibSpec{Text: cut, Ctx: ctxLen, Chunk: chunk, Parallel: 3}})
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		var res activities.CalibResult
		if err := env.GetWorkflowResult(&res); err != nil {
			t.Fatal(err)
		}
		got, err := store.ReadAll(ctx, mustLocal(t, outDir), res.IMatrixKey)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("chunk %d: distributed imatrix differs from the single-process one", chunk)
		}
		if res.Windows != nwin || res.Tokens != int64(nwin*ctxLen) || res.Entries != 7*ck.Config.NumLayers {
			t.Fatalf("chunk %d: result %+v", chunk, res)
		}
	}
	t.Logf("%s: %d windows of %d: imatrix.gguf (%d bytes, %d entries) identical for chunkings 1, 7 and 20", modelDir, nwin, ctxLen, want.Len(), len(im.Entries))
}

// TestCalibrateShortText: a calibration text shorter than one window fails
// as bad input, naming the text, before any window is run.
func TestCalibrateShortText(t *testing.T) {
	env, _ := newEnv(t)
	env.RegisterWorkflow(CalibrateModel)
	short := filepath.Join(t.TempDir(), "short.txt")
	if _, err := mustLocal(t, filepath.Dir(short)).Put(context.Background(), "short.txt", stringsReader("Once upon a time."), 17); err != nil {
		t.Fatal(err)
	}
	env.ExecuteWorkflow(CalibrateModel, CalibrateInput{Model: fixture, Output: t.TempDir(), Spec: CalibSpec{Text: short, Ctx: 128}})
	err := env.GetWorkflowError()
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("short.txt: infer: 5 ids make no complete window")) {
		t.Fatalf("error %v", err)
	}
}

// TestQuantizeWithCalibration: QuantizeModel with a calibration runs
// CalibrateModel as a child before any shard and quantizes with its
// imatrix.gguf: the GGUF equals a one-process export given that matrix,
// differs from the unweighted one, and the summary names the matrix.
func TestQuantizeWithCalibration(t *testing.T) {
	ctx := context.Background()
	env, _ := newEnv(t)
	env.RegisterWorkflow(CalibrateModel)
	out := t.TempDir()
	text, _ := filepath.Abs("../testdata/text/tinystories-valid-sample.txt")
	env.ExecuteWorkflow(QuantizeModel, QuantizeInput{Model: fixture, Output: out, Recipe: "q4_0", Concurrency: 3,
		Calibration: &CalibSpec{Text: text, Ctx: 64, Chunks: 12, Chunk: 5}})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var sum Summary
	if err := env.GetWorkflowResult(&sum); err != nil {
		t.Fatal(err)
	}
	if sum.Calibration == nil || sum.Calibration.Windows != 12 || sum.Calibration.Tokens != 12*64 || sum.Imatrix == nil ||
		sum.Imatrix.SHA256 != sum.Calibration.SHA256 || sum.Imatrix.Location != joinLoc(out, activities.IMatrixKey) {
		t.Fatalf("summary: calibration %+v, imatrix %+v", sum.Calibration, sum.Imatrix)
	}
	dst := mustLocal(t, out)
	got, err := store.ReadAll(ctx, dst, export.GGUFKey)
	if err != nil {
		t.Fatal(err)
	}
	src, _ := store.NewLocal(fixture)
	ck, err := model.Open(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	im, sha, err := export.ReadIMatrix(ctx, dst, activities.IMatrixKey)
	if err != nil || sha != sum.Imatrix.SHA256 {
		t.Fatalf("imatrix: %v (sha %s)", err, sha)
	}
	r, err := shards.NamedRecipe("q4_0")
	if err != nil {
		t.Fatal(err)
	}
	plain := mustLocal(t, t.TempDir())
	if _, _, err := export.Run(ctx, ck, plain, r, export.Events{}); err != nil {
		t.Fatal(err)
	}
	r.Imatrix = sum.Imatrix
	weighted := mustLocal(t, t.TempDir())
	if _, _, err := export.RunWeighted(ctx, ck, weighted, r, im, export.Events{}); err != nil {
		t.Fatal(err)
	}
	want, _ := store.ReadAll(ctx, weighted, export.GGUFKey)
	unweighted, _ := store.ReadAll(ctx, plain, export.GGUFKey)
	if !bytes.Equal(got, want) {
		t.Error("the workflow's GGUF differs from a one-process export with its imatrix")
	}
	if bytes.Equal(got, unweighted) {
		t.Error("the workflow's GGUF equals the unweighted export: the imatrix was not used")
	}
}
