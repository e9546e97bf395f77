package activities

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/minio/minio-go/v7/pkg/credentials"
	"go.temporal.io/sdk/temporal"

	"github.com/ohms-project/adaptq/gguf"
	"github.com/ohms-project/adaptq/infer"
	"github.com/ohms-project/adaptq/internal/testenv"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/safetensors"
	"github.com/ohms-project/adaptq/shards"
	"github.com/ohms-project/adaptq/store"
	"github.com/ohms-project/adaptq/synth"
	"github.com/ohms-project/adaptq/tokenizer"
)

const (
	fixtureModel = "../testdata/models/stories260k"
	fixtureText  = "../testdata/text/tinystories-valid-sample.txt"
)

// minio is this test binary's MinIO server, started on first use.
var minio testenv.LazyMinIO

func TestMain(m *testing.M) {
	code := m.Run()
	minio.Stop()
	os.Exit(code)
}

func abs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func q4k(t *testing.T) shards.Recipe {
	t.Helper()
	r, err := Recipe("q4_k", shards.Rotation{Kind: "none"}, false, false)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestCheckFixture: the fixture with its text passes, and the probe leaves
// nothing in the output.
func TestCheckFixture(t *testing.T) {
	ctx := context.Background()
	out := t.TempDir()
	ck, err := (&Activities{}).Check(ctx, PlanInput{Model: abs(t, fixtureModel), Output: out, Recipe: q4k(t),
		Evaluation: &TextInput{Text: abs(t, fixtureText), Ctx: 256, Protocol: "llama.cpp"}})
	if err != nil {
		t.Fatal(err)
	}
	if ck.NumParams() != 260032 {
		t.Fatalf("%d parameters", ck.NumParams())
	}
	left, _ := os.ReadDir(out)
	if len(left) != 0 {
		t.Fatalf("the probe left %v", left)
	}
}

// TestCheckProblems: each bad input is a *Problem naming the field, the
// file and what to do, in the workflow input's words.
func TestCheckProblems(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	model := abs(t, fixtureModel)
	text := abs(t, fixtureText)
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	nul := write("nul.txt", "Once upon a time\x00")
	// A checkpoint without tokenizer.json.
	noTok := filepath.Join(dir, "no-tokenizer")
	os.Mkdir(noTok, 0o755)
	for _, f := range []string{"config.json", "model.safetensors"} {
		b, _ := os.ReadFile(filepath.Join(model, f))
		os.WriteFile(filepath.Join(noTok, f), b, 0o644)
	}
	heads := q4k(t)
	heads.Rotation.Heads = true
	badRot := q4k(t)
	badRot.Rotation.Kind = "givens"
	ev := func(text, proto string, ctxLen int) *TextInput {
		return &TextInput{Text: text, Ctx: ctxLen, Protocol: proto}
	}
	for _, tc := range []struct {
		name  string
		in    PlanInput
		field string
		line  string
	}{
		{"no output", PlanInput{Model: model, Recipe: q4k(t)}, FieldOutput,
			"output: not given; give output a directory, file:///path or s3://bucket/prefix"},
		{"unsupported scheme", PlanInput{Model: "gs://b/m", Output: dir, Recipe: q4k(t)}, FieldModel,
			`model: location "gs://b/m": unsupported scheme (use a path, file:// or s3://); give model a directory, file:///path or s3://bucket/prefix`},
		{"heads without rotation", PlanInput{Model: model, Output: dir, Recipe: heads}, FieldHeads,
			"rotation.heads: rotates each head's value/output pair of a rotated model, but rotation.kind is not hadamard; add rotation.kind hadamard or drop rotation.heads"},
		{"unknown rotation", PlanInput{Model: model, Output: dir, Recipe: badRot}, FieldRotation,
			`rotation.kind: unknown rotation "givens"; use none or hadamard`},
		{"evaluation without text", PlanInput{Model: model, Output: dir, Recipe: q4k(t), Evaluation: ev("", "llama.cpp", 0)}, FieldEvalText,
			"evaluation.text: not given, but the evaluation options ask for an evaluation; give evaluation.text a text file, or drop evaluation.ctx and evaluation.protocol"},
		{"unknown protocol", PlanInput{Model: model, Output: dir, Recipe: q4k(t), Evaluation: ev(text, "wikitext", 0)}, FieldEvalProtocol,
			`evaluation.protocol: unknown protocol "wikitext"; use full or llama.cpp`},
		{"negative ctx", PlanInput{Model: model, Output: dir, Recipe: q4k(t), Evaluation: ev(text, "full", -5)}, FieldEvalCtx,
			"evaluation.ctx: window length -5 is too small; give a length of at least 4 (256 is usual)"},
		{"NUL in text", PlanInput{Model: model, Output: dir, Recipe: q4k(t), Evaluation: ev(nul, "", 0)}, FieldEvalText,
			nul + ": not UTF-8 text (a NUL byte at byte 16); give evaluation.text a UTF-8 text file"},
		{"text is a folder", PlanInput{Model: model, Output: dir, Recipe: q4k(t), Evaluation: ev(dir, "", 0)}, FieldEvalText,
			dir + ": is a folder, not a file; give evaluation.text an existing UTF-8 text file"},
		{"no tokenizer", PlanInput{Model: noTok, Output: dir, Recipe: q4k(t)}, FieldModel,
			noTok + "/tokenizer.json: not found (the GGUF file embeds the model's tokenizer); put the checkpoint's tokenizer.json beside its config.json"},
		{"imatrix is a folder", PlanInput{Model: model, Output: dir, Recipe: q4k(t), Imatrix: dir}, FieldImatrix,
			dir + ": is a folder, not a file; give imatrix an importance-matrix file (llama-imatrix or `adaptq calibrate` writes one)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := (&Activities{}).Check(ctx, tc.in)
			var p *Problem
			if !errors.As(err, &p) {
				t.Fatalf("want a *Problem, got %v", err)
			}
			if p.Field != tc.field || err.Error() != tc.line {
				t.Errorf("field %q, line\n%q\nwant field %q and\n%q", p.Field, err.Error(), tc.field, tc.line)
			}
		})
	}
}

// TestTextWindowBoundary: a text of n tokens makes one window at ctx n+1
// under both protocols and none at n+2, as the evaluation cuts them.
func TestTextWindowBoundary(t *testing.T) {
	ctx := context.Background()
	model := abs(t, fixtureModel)
	tok, err := tokenizer.Load(filepath.Join(model, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	body := "Once upon a time, there was a little girl named Lily. She loved to play outside."
	n := len(tok.Encode(body, false))
	p := filepath.Join(t.TempDir(), "t.txt")
	os.WriteFile(p, []byte(body), 0o644)
	for _, proto := range []infer.Protocol{infer.ProtocolFull, infer.ProtocolLlamaCpp} {
		for _, c := range []struct {
			ctx int
			ok  bool
		}{{n + 1, true}, {n + 2, false}} {
			_, err := (&Activities{}).Check(ctx, PlanInput{Model: model, Output: t.TempDir(), Recipe: q4k(t),
				Evaluation: &TextInput{Text: p, Ctx: c.ctx, Protocol: string(proto)}})
			if c.ok && err != nil {
				t.Errorf("%s ctx %d (%d tokens): %v", proto, c.ctx, n, err)
			}
			if !c.ok && (err == nil || !strings.Contains(err.Error(), "less than one window")) {
				t.Errorf("%s ctx %d (%d tokens): %v, want too short", proto, c.ctx, n, err)
			}
		}
	}
}

// TestProblemCrossesTemporal: a Problem made into a BadInput application
// error comes back from its details and renders in a client's words.
func TestProblemCrossesTemporal(t *testing.T) {
	p := problem(FieldEvalText, "file:///data/t.txt", "not found", "give {evaluation.text} a file or drop {evaluation.ctx}", errors.New("cause"))
	err := fmtWrap(BadInputError(p))
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || !ae.NonRetryable() || ae.Type() != ErrTypeBadInput {
		t.Fatalf("not a non-retryable BadInput error: %v", err)
	}
	got, ok := ProblemOf(ae) // the details, not the Go value
	if !ok || got.Field != FieldEvalText || got.Location != "/data/t.txt" {
		t.Fatalf("ProblemOf: %+v %v", got, ok)
	}
	if line := got.Render(map[string]string{FieldEvalText: "--text", FieldEvalCtx: "--ctx"}); line != "/data/t.txt: not found; give --text a file or drop --ctx" {
		t.Errorf("rendered %q", line)
	}
	if ae.Message() != "/data/t.txt: not found; give evaluation.text a file or drop evaluation.ctx" {
		t.Errorf("message %q", ae.Message())
	}
}

func fmtWrap(err error) error { return errors.Join(errors.New("activity error"), err) }

// faultyStore fails every read as a store outage would.
type faultyStore struct{ store.Store }

var errOutage = errors.New("read tcp 10.0.0.1:9000: connection reset by peer")

func (faultyStore) Stat(context.Context, string) (store.ObjectInfo, error) {
	return store.ObjectInfo{}, errOutage
}
func (faultyStore) Get(context.Context, string) (io.ReadCloser, error) { return nil, errOutage }

// TestPlanModelRetriesFaults: a store outage during the checks is not a
// Problem, and PlanModel returns it retryable; bad input is non-retryable.
func TestPlanModelRetriesFaults(t *testing.T) {
	ctx := context.Background()
	a := &Activities{Open: func(loc string) (store.Store, error) {
		s, err := store.Open(loc)
		return faultyStore{s}, err
	}}
	in := PlanInput{Model: abs(t, fixtureModel), Output: t.TempDir(), Recipe: q4k(t)}
	_, err := a.Check(ctx, in)
	if _, isProblem := ProblemOf(err); err == nil || isProblem || !errors.Is(err, errOutage) {
		t.Fatalf("Check: %v, want the outage as a fault", err)
	}
	_, err = a.PlanModel(ctx, in)
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) && ae.NonRetryable() {
		t.Fatalf("PlanModel made a store outage non-retryable: %v", err)
	}
	in.Model = filepath.Join(t.TempDir(), "none")
	_, err = (&Activities{}).PlanModel(ctx, in)
	if !errors.As(err, &ae) || !ae.NonRetryable() || ae.Type() != ErrTypeBadInput {
		t.Fatalf("PlanModel on a missing model: %v, want non-retryable BadInput", err)
	}
}

// TestCheckS3: a missing output bucket and refused credentials are
// Problems; an endpoint that does not answer is a fault.
func TestCheckS3(t *testing.T) {
	ctx := context.Background()
	m := minio.Get(t)
	models := minio.Store(t, "check-models", "")
	if err := testenv.UploadDir(ctx, abs(t, fixtureModel), models, "stories260k"); err != nil {
		t.Fatal(err)
	}
	for _, kv := range m.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	in := PlanInput{Model: "s3://check-models/stories260k", Output: "s3://check-out-missing/x", Recipe: q4k(t)}
	_, err := (&Activities{}).Check(ctx, in)
	if err == nil || err.Error() != "s3://check-out-missing/x: cannot be written: its bucket does not exist; create the bucket first or give output a location you can write" {
		t.Errorf("missing bucket: %v", err)
	}
	wrong := &Activities{Open: func(loc string) (store.Store, error) {
		return store.NewS3(store.S3Config{Endpoint: m.Endpoint, Bucket: "check-models", Prefix: "stories260k"}, credentials.NewStaticV4(m.AccessKey, "wrong", ""))
	}}
	_, err = wrong.Check(ctx, in)
	if p, ok := ProblemOf(err); !ok || p.Field != FieldModel || !strings.Contains(err.Error(), "the store refuses access") {
		t.Errorf("wrong secret: %v", err)
	}
	t.Setenv(store.EnvEndpoint, "http://"+testenv.FreeAddr(t))
	_, err = (&Activities{}).Check(ctx, in)
	if _, ok := ProblemOf(err); err == nil || ok {
		t.Errorf("endpoint down: %v, want a fault", err)
	}
}

// FuzzNotText: notText finds a byte exactly when the bytes are not valid
// UTF-8 or hold a NUL, and the offset it gives starts the first bad rune.
func FuzzNotText(f *testing.F) {
	for _, s := range []string{"", "plain", "caf\xc3\xa9", "\xff", "a\x00b", "\xe2\x82", "ok \xf0\x9f\x98\x80"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		i, what := notText(b)
		bad := !utf8.Valid(b) || bytes.IndexByte(b, 0) >= 0
		if (i >= 0) != bad {
			t.Fatalf("notText(%q) = %d %q, valid text %v", b, i, what, !bad)
		}
		if i >= 0 && (!utf8.Valid(b[:i]) || bytes.IndexByte(b[:i], 0) >= 0) {
			t.Fatalf("notText(%q) = %d: the bytes before are not text either", b, i)
		}
	})
}

// writeIMatrix writes an importance matrix for every weight of the
// fixture (ones, 8 tokens), edited by edit, and returns its path.
func writeIMatrix(t *testing.T, dir, name string, r shards.Recipe, edit func(*gguf.IMatrix)) string {
	t.Helper()
	return writeIMatrixFor(t, fixtureModel, dir, name, r, edit)
}

// writeIMatrixFor is writeIMatrix for the checkpoint in modelDir.
func writeIMatrixFor(t *testing.T, modelDir, dir, name string, r shards.Recipe, edit func(*gguf.IMatrix)) string {
	t.Helper()
	ctx := context.Background()
	st, _ := store.NewLocal(modelDir)
	ck, err := model.Open(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	cols, _, err := shards.MakePlan(ck).IMatrixWeights(ck, r)
	if err != nil {
		t.Fatal(err)
	}
	im := &gguf.IMatrix{Datasets: []string{"t"}, ChunkCount: 1, ChunkSize: 8, Entries: map[string]*gguf.IMatrixEntry{},
		Extra: gguf.Metadata{{Key: KeyIMatrixRotation, Value: r.Rotation.ID()}}}
	for n, c := range cols {
		e := &gguf.IMatrixEntry{Cols: c, Mats: 1, Sum2: make([]float32, c), Counts: []float32{8}}
		for i := range e.Sum2 {
			e.Sum2[i] = float32(i%3 + 1)
		}
		im.Entries[n] = e
	}
	if edit != nil {
		edit(im)
	}
	var buf bytes.Buffer
	if err := gguf.WriteIMatrix(&buf, im); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCheckIMatrixFile: PlanModel reads the importance matrix, checks it
// against the model and the rotation and returns its SHA-256; each bad
// file is a Problem naming the file and the weight, before any shard.
func TestCheckIMatrixFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	model := abs(t, fixtureModel)
	text := abs(t, fixtureText)
	good := writeIMatrix(t, dir, "good.gguf", q4k(t), nil)
	body, _ := os.ReadFile(good)
	sum := sha256.Sum256(body)
	po, err := (&Activities{}).PlanModel(ctx, PlanInput{Model: model, Output: t.TempDir(), Recipe: q4k(t), Imatrix: good})
	if err != nil {
		t.Fatal(err)
	}
	if po.ImatrixSHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("PlanModel's imatrix SHA-256 %q, the file's %x", po.ImatrixSHA256, sum)
	}
	truncated := filepath.Join(dir, "truncated.gguf")
	os.WriteFile(truncated, body[:len(body)/2], 0o644)
	// WriteIMatrix refuses NaN: write a marker value and patch its bytes.
	const marker = 12345.678
	nan := writeIMatrix(t, dir, "nan.gguf", q4k(t), func(im *gguf.IMatrix) { im.Entries["blk.2.ffn_down.weight"].Sum2[3] = marker })
	nb, _ := os.ReadFile(nan)
	var mk, nanBits [4]byte
	binary.LittleEndian.PutUint32(mk[:], math.Float32bits(marker))
	binary.LittleEndian.PutUint32(nanBits[:], math.Float32bits(float32(math.NaN())))
	if bytes.Count(nb, mk[:]) != 1 {
		t.Fatal("marker not found once")
	}
	os.WriteFile(nan, bytes.Replace(nb, mk[:], nanBits[:], 1), 0o644)
	missing := writeIMatrix(t, dir, "missing.gguf", q4k(t), func(im *gguf.IMatrix) { delete(im.Entries, "blk.4.attn_v.weight") })
	rot := q4k(t)
	rot.Rotation = shards.Rotation{Kind: "hadamard", Seed: 2}
	rotated := writeIMatrix(t, dir, "rotated.gguf", rot, nil)
	short := filepath.Join(dir, "short.txt")
	os.WriteFile(short, []byte("Once upon a time."), 0o644)
	for _, tc := range []struct {
		name  string
		in    PlanInput
		field string
		line  string
	}{
		{"truncated", PlanInput{Model: model, Output: dir, Recipe: q4k(t), Imatrix: truncated}, FieldImatrix,
			truncated + ": not a usable importance matrix: imatrix: "},
		{"NaN", PlanInput{Model: model, Output: dir, Recipe: q4k(t), Imatrix: nan}, FieldImatrix,
			nan + `: not a usable importance matrix: imatrix entry "blk.2.ffn_down.weight": Σx² of column 3 is NaN`},
		{"missing weight", PlanInput{Model: model, Output: dir, Recipe: q4k(t), Imatrix: missing}, FieldImatrix,
			missing + `: does not fit the model: imatrix has no entry for weight "blk.4.attn_v.weight"`},
		{"rotated matrix", PlanInput{Model: model, Output: dir, Recipe: q4k(t), Imatrix: rotated}, FieldImatrix,
			rotated + ": does not fit the model: collected on a rotated model (hadamard seed=2 heads=false), but the recipe does not rotate"},
		{"unrotated matrix", PlanInput{Model: model, Output: dir, Recipe: rot, Imatrix: good}, FieldImatrix,
			good + `: does not fit the model: collected on the rotation "none", but the recipe rotates with "hadamard seed=2 heads=false"`},
		{"calibration and imatrix", PlanInput{Model: model, Output: dir, Recipe: q4k(t), Imatrix: good, Calibration: &TextInput{Text: text}}, FieldImatrix,
			"imatrix: given together with calibration.text: the run would have two importance matrices"},
		{"calibration on the evaluation text", PlanInput{Model: model, Output: dir, Recipe: q4k(t), Calibration: &TextInput{Text: text},
			Evaluation: &TextInput{Text: text}}, FieldCalibText, text + ": is also the evaluation text"},
		{"calibration text too short", PlanInput{Model: model, Output: dir, Recipe: q4k(t), Calibration: &TextInput{Text: short, Ctx: 64}}, FieldCalibText,
			short + ": 5 tokens, less than one window of 64 (protocol llama.cpp needs 63); give a longer text or a smaller calibration.ctx"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := (&Activities{}).PlanModel(ctx, tc.in)
			p, ok := ProblemOf(err)
			if !ok {
				t.Fatalf("want a Problem, got %v", err)
			}
			if p.Field != tc.field || !strings.HasPrefix(p.Error(), tc.line) {
				t.Errorf("field %q, line\n%q\nwant field %q and a line starting\n%q", p.Field, p.Error(), tc.field, tc.line)
			}
		})
	}
}

// TestBOSFallback: a tokenizer that names no BOS (SmolLM2's) takes
// config.json's bos_token_id, as llama.cpp takes the GGUF's; the
// tokenizer's own BOS wins when it has one.
func TestBOSFallback(t *testing.T) {
	noBOS, err := tokenizer.Parse([]byte(`{"model":{"type":"BPE","vocab":{"a":0,"b":1},"merges":[]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := BOS(noBOS, nil); ok {
		t.Fatal("a BOS without tokenizer or config")
	}
	if id, ok := BOS(noBOS, &model.Config{BOSTokenID: []int{1}}); !ok || id != 1 {
		t.Fatalf("config fallback: %d %v", id, ok)
	}
	fix, err := tokenizer.Load(filepath.Join(fixtureModel, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := fix.BOS()
	if id, ok := BOS(fix, &model.Config{BOSTokenID: []int{7}}); !ok || id != want {
		t.Fatalf("tokenizer's BOS %d, got %d %v", want, id, ok)
	}
}

// synth256 writes a two-layer checkpoint whose rows are all multiples of
// 256 (so no i-quant falls back to IQ4_NL), with the fixture's tokenizer.
func synth256(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	st, err := store.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	raw, cfg, err := synth.ShapeConfig(`{"model_type":"llama","hidden_size":256,"intermediate_size":512,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":4,"vocab_size":512,"tie_word_embeddings":false}`, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := synth.Write(context.Background(), st, raw, cfg, synth.Options{DType: safetensors.BF16, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	tok, err := os.ReadFile(filepath.Join(fixtureModel, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), tok, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestCheckNeedsImatrix: a recipe that writes a 1- or 2-bit i-quant
// without an importance matrix is refused before the first shard in one
// line naming the recipe and the first such tensor (Check and PlanModel);
// with an imatrix file, on a model whose rows fall back (the fixture), or
// for a recipe llama.cpp quantizes without one, it passes.
func TestCheckNeedsImatrix(t *testing.T) {
	ctx := context.Background()
	m256 := synth256(t)
	recipe := func(name string) shards.Recipe {
		r, err := Recipe(name, shards.Rotation{Kind: "none"}, false, false)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	imatrix := writeIMatrixFor(t, m256, t.TempDir(), "imatrix.gguf", recipe("iq2_xxs"), nil)
	for _, tc := range []struct {
		model, recipe, imatrix string
		line                   string // "" passes
	}{
		{m256, "iq2_xxs", "", "recipe: recipe iq2_xxs needs an importance matrix (blk.0.attn_q.weight would be IQ2_XXS); give imatrix <file> or calibration.text <file>"},
		{m256, "iq1_m", "", "recipe: recipe iq1_m needs an importance matrix (blk.0.attn_q.weight would be IQ1_M); give imatrix <file> or calibration.text <file>"},
		{m256, "iq2_m", "", "recipe: recipe iq2_m needs an importance matrix (blk.0.attn_q.weight would be IQ2_S); give imatrix <file> or calibration.text <file>"},
		{m256, "iq3_xxs", "", "recipe: recipe iq3_xxs needs an importance matrix (blk.0.attn_q.weight would be IQ2_S); give imatrix <file> or calibration.text <file>"},
		{m256, "uniform-iq2_xs", "", "recipe: recipe uniform-iq2_xs needs an importance matrix (blk.0.attn_q.weight would be IQ2_XS); give imatrix <file> or calibration.text <file>"},
		{m256, "iq2_xxs", imatrix, ""},
		{m256, "iq4_xs", "", ""},
		{m256, "iq3_s", "", ""},
		{m256, "q2_k", "", ""},
		{abs(t, fixtureModel), "iq1_s", "", ""},
	} {
		t.Run(tc.recipe, func(t *testing.T) {
			in := PlanInput{Model: tc.model, Output: t.TempDir(), Recipe: recipe(tc.recipe), Imatrix: tc.imatrix}
			_, err := (&Activities{}).Check(ctx, in)
			if tc.line == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var p *Problem
			if !errors.As(err, &p) || p.Field != FieldRecipe || err.Error() != tc.line {
				t.Fatalf("%v\nwant %q", err, tc.line)
			}
			_, err = (&Activities{}).PlanModel(ctx, in)
			var ae *temporal.ApplicationError
			if !errors.As(err, &ae) || !ae.NonRetryable() || ae.Type() != ErrTypeBadInput || ae.Message() != tc.line {
				t.Fatalf("PlanModel: %v, want the same line as non-retryable BadInput", err)
			}
		})
	}
}
