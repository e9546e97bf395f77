package activities

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"go.temporal.io/sdk/temporal"

	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/infer"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/shards"
	"github.com/ohms-project/adaptq/store"
	"github.com/ohms-project/adaptq/tokenizer"
)

// DefaultEvalCtx is the evaluation window length when the input gives none.
const DefaultEvalCtx = 256

// Fields of the workflow input that a Problem can name (as QuantizeInput's
// JSON names them); a CLI maps them to its flags when it renders one.
const (
	FieldModel         = "model"
	FieldOutput        = "output"
	FieldRecipe        = "recipe"
	FieldRotation      = "rotation.kind"
	FieldHeads         = "rotation.heads"
	FieldEvalText      = "evaluation.text"
	FieldEvalCtx       = "evaluation.ctx"
	FieldEvalProtocol  = "evaluation.protocol"
	FieldImatrix       = "imatrix"
	FieldCalibText     = "calibration.text"
	FieldCalibCtx      = "calibration.ctx"
	credentialsTimeout = 10 * time.Second
)

// DefaultCalibCtx is the calibration window length when the input gives
// none (llama-imatrix's default chunk).
const DefaultCalibCtx = 512

// fields are the names a Problem's What and Fix may refer to as {name}.
var fields = []string{FieldModel, FieldOutput, FieldRecipe, FieldRotation, FieldHeads,
	FieldEvalText, FieldEvalCtx, FieldEvalProtocol, FieldImatrix, FieldCalibText, FieldCalibCtx}

// Problem is bad input found before a run starts: which input field is at
// fault, the file or object at fault when there is one, what is wrong and
// what to do. It travels in a BadInput application error as its details,
// so a client can render it in its own words (Render).
type Problem struct {
	Field    string `json:"field"`
	Location string `json:"location,omitempty"`
	What     string `json:"what"`
	Fix      string `json:"fix"`
	cause    error
}

// Error is the problem in the workflow input's words.
func (p *Problem) Error() string { return p.Render(nil) }

// Unwrap is the error the problem was found from, if any.
func (p *Problem) Unwrap() error { return p.cause }

// Render writes the problem as one line, "<location>: <what is wrong>;
// <what to do>", naming each input field as names does (a CLI passes its
// flags: "evaluation.text" → "--text"); fields names lacks keep their
// workflow input names. The location is the field itself when no file or
// object is at fault.
func (p *Problem) Render(names map[string]string) string {
	name := func(f string) string {
		if n, ok := names[f]; ok {
			return n
		}
		return f
	}
	pairs := make([]string, 0, 2*len(fields))
	for _, f := range fields {
		pairs = append(pairs, "{"+f+"}", name(f))
	}
	r := strings.NewReplacer(pairs...)
	loc := p.Location
	if loc == "" {
		loc = name(p.Field)
	}
	return loc + ": " + r.Replace(p.What) + "; " + r.Replace(p.Fix)
}

// problem builds a Problem; loc is shown as a path when it is a local one.
func problem(field, loc, what, fix string, cause error) *Problem {
	return &Problem{Field: field, Location: Display(loc), What: what, Fix: fix, cause: cause}
}

// Display writes a location the way a person gives it: a local file:// URL
// as its path.
func Display(loc string) string {
	if rest, ok := strings.CutPrefix(loc, "file://"); ok && strings.HasPrefix(rest, "/") {
		return rest
	}
	return loc
}

// BadInputError makes a non-retryable BadInput application error of err;
// a *Problem travels as the error's details.
func BadInputError(err error) error {
	var p *Problem
	if errors.As(err, &p) {
		return temporal.NewNonRetryableApplicationError(p.Error(), ErrTypeBadInput, p.cause, *p)
	}
	return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, err)
}

// ProblemOf returns the Problem in err: a *Problem in its chain, or the
// details of a BadInput application error that carries one (an error that
// crossed Temporal).
func ProblemOf(err error) (*Problem, bool) {
	var p *Problem
	if errors.As(err, &p) {
		return p, true
	}
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) && ae.Type() == ErrTypeBadInput && ae.HasDetails() {
		var d Problem
		if ae.Details(&d) == nil && d.What != "" {
			d.cause = err
			return &d, true
		}
	}
	return nil, false
}

// TextInput is a text a run reads and cuts into windows (the evaluation
// text; later the calibration text).
type TextInput struct {
	Text     string `json:"text"`               // object location of the text
	Ctx      int    `json:"ctx,omitempty"`      // window length (0: DefaultEvalCtx)
	Protocol string `json:"protocol,omitempty"` // "full" (default) or "llama.cpp"
}

// Check checks every input of a run before its first shard starts, so a
// typo costs seconds, not a whole quantization: the recipe and its options
// together, the model (config.json, the safetensors headers and
// tokenizer.json, which the GGUF file needs), the evaluation text (it
// exists, is UTF-8 text and makes at least one window at its context once
// tokenized), the importance-matrix file (exists and is readable; its
// parsing and matching the model belong here too when the calibration work
// adds them, as do a budget file's) or, without one and without a
// calibration text, that the recipe writes no type llama.cpp quantizes only
// with one (shards.Plan.ImatrixRequired), and the output (a probe object is
// written and deleted). The CLI calls it before it starts a workflow and
// PlanModel again, so a run started with `temporal workflow start` gets the
// same checks. Bad input is a *Problem; any other error is a fault of a
// store, which a retry may cure. It returns the opened checkpoint.
func (a *Activities) Check(ctx context.Context, in PlanInput) (*model.Checkpoint, error) {
	ck, _, err := a.check(ctx, in)
	return ck, err
}

// check is Check; it also returns the SHA-256 of the importance matrix's
// bytes ("" without one).
func (a *Activities) check(ctx context.Context, in PlanInput) (*model.Checkpoint, string, error) {
	ck, out, err := a.checkInputs(ctx, in)
	if err != nil {
		return nil, "", err
	}
	sha := ""
	if in.Imatrix != "" {
		if sha, err = a.checkIMatrix(ctx, ck, in.Recipe, in.Imatrix); err != nil {
			return nil, "", err
		}
	}
	// The probe write comes last: a refused input leaves no output folder.
	if err := probeWrite(ctx, out, in.Output); err != nil {
		return nil, "", err
	}
	return ck, sha, nil
}

// checkInputs is everything Check does but parse the importance matrix
// and probe the output; it returns the checkpoint and the output store.
func (a *Activities) checkInputs(ctx context.Context, in PlanInput) (*model.Checkpoint, store.Store, error) {
	if err := checkRecipe(in.Recipe); err != nil {
		return nil, nil, err
	}
	var cal TextInput
	if in.Calibration != nil {
		var err error
		if cal, err = calibSpec(*in.Calibration, in.Imatrix, in.Evaluation); err != nil {
			return nil, nil, err
		}
	}
	var ev TextInput
	if in.Evaluation != nil {
		var err error
		if ev, err = textSpec(FieldEvalText, FieldEvalCtx, FieldEvalProtocol, *in.Evaluation); err != nil {
			return nil, nil, err
		}
	}
	src, err := a.openChecked(ctx, FieldModel, in.Model)
	if err != nil {
		return nil, nil, err
	}
	out, err := a.openChecked(ctx, FieldOutput, in.Output)
	if err != nil {
		return nil, nil, err
	}
	ck, err := checkModel(ctx, src, in.Model)
	if err != nil {
		return nil, nil, err
	}
	tok, err := checkTokenizer(ctx, src)
	if err != nil {
		return nil, nil, err
	}
	if in.Evaluation != nil {
		if err := a.checkText(ctx, FieldEvalText, FieldEvalCtx, ev, tok, ck.Config, store.Describe(src, model.TokenizerFile)); err != nil {
			return nil, nil, err
		}
	}
	if in.Calibration != nil {
		if err := a.checkText(ctx, FieldCalibText, FieldCalibCtx, cal, tok, ck.Config, store.Describe(src, model.TokenizerFile)); err != nil {
			return nil, nil, err
		}
	}
	if in.Imatrix != "" {
		if _, _, err := a.checkFile(ctx, FieldImatrix, in.Imatrix, imatrixKind); err != nil {
			return nil, nil, err
		}
	} else if in.Calibration == nil {
		if err := checkNeedsImatrix(ck, in.Recipe); err != nil {
			return nil, nil, err
		}
	}
	return ck, out, nil
}

const imatrixKind = "an importance-matrix file (llama-imatrix or `adaptq calibrate` writes one)"

// calibSpec checks the calibration options before anything is read and
// fills in the defaults: a text, a window of at least 4 tokens, not with
// an importance matrix as well, and not the evaluation text.
func calibSpec(c TextInput, imatrix string, ev *TextInput) (TextInput, error) {
	if c.Text == "" {
		return c, problem(FieldCalibText, "", "not given, but the calibration options ask for a calibration",
			"give {calibration.text} a text file, or drop {calibration.ctx}", nil)
	}
	if imatrix != "" {
		return c, problem(FieldImatrix, "", "given together with {calibration.text}: the run would have two importance matrices",
			"give one: {imatrix} to use a file, {calibration.text} to collect one", nil)
	}
	if ev != nil && ev.Text == c.Text {
		return c, problem(FieldCalibText, c.Text, "is also the evaluation text: an importance collected on the text the model is measured on flatters it",
			"give {calibration.text} a text disjoint from {evaluation.text}", nil)
	}
	c.Protocol = string(infer.ProtocolLlamaCpp)
	if c.Ctx == 0 {
		c.Ctx = DefaultCalibCtx
	}
	if c.Ctx < 4 {
		return c, problem(FieldCalibCtx, "", fmt.Sprintf("window length %d is too small", c.Ctx), "give a length of at least 4 (512 is usual)", nil)
	}
	return c, nil
}

// checkIMatrix reads and parses the importance matrix at loc and checks it
// against the model and the recipe (shards.Plan.CheckIMatrix: its weights,
// columns, values and rotation); it returns the SHA-256 of its bytes.
func (a *Activities) checkIMatrix(ctx context.Context, ck *model.Checkpoint, r shards.Recipe, loc string) (string, error) {
	s, key, err := a.checkFile(ctx, FieldImatrix, loc, imatrixKind)
	if err != nil {
		return "", err
	}
	im, sha, err := export.ReadIMatrix(ctx, s, key)
	if err != nil {
		var bad *export.IMatrixError
		if errors.As(err, &bad) {
			return "", problem(FieldImatrix, loc, "not a usable importance matrix: "+bad.Err.Error(), "give {imatrix} "+imatrixKind, err)
		}
		return "", refusal(FieldImatrix, loc, err, "give {imatrix} "+imatrixKind)
	}
	if err := shards.MakePlan(ck).CheckIMatrix(ck, r, im); err != nil {
		return "", problem(FieldImatrix, loc, "does not fit the model: "+err.Error(),
			"give {imatrix} a matrix collected on this model (`adaptq calibrate` with the recipe's rotation)", err)
	}
	return sha, nil
}

// checkRecipe checks a built recipe's options together.
func checkRecipe(r shards.Recipe) error {
	if k := r.Rotation.Kind; k != "" && k != "none" && k != "hadamard" {
		return problem(FieldRotation, "", fmt.Sprintf("unknown rotation %q", k), "use none or hadamard", nil)
	}
	if r.Rotation.Heads && !r.Rotation.Enabled() {
		return problem(FieldHeads, "", "rotates each head's value/output pair of a rotated model, but {rotation.kind} is not hadamard",
			"add {rotation.kind} hadamard or drop {rotation.heads}", nil)
	}
	if err := r.Validate(); err != nil {
		return problem(FieldRecipe, "", err.Error(), "choose a recipe adaptq knows (`adaptq quantize -h` lists them)", err)
	}
	return nil
}

// checkNeedsImatrix refuses a recipe that, without an importance matrix,
// writes a tensor in a type llama.cpp quantizes only with one
// (shards.NeedsImatrix: the 1- and 2-bit i-quants).
func checkNeedsImatrix(ck *model.Checkpoint, r shards.Recipe) error {
	err := shards.MakePlan(ck).ImatrixRequired(ck, r)
	var need *shards.ImatrixRequiredError
	switch {
	case errors.As(err, &need):
		return problem(FieldRecipe, "", need.Error(), "give {imatrix} <file> or {calibration.text} <file>", err)
	case err != nil:
		return problem(FieldRecipe, "", err.Error(), "choose a recipe whose types fit the model's rows", err)
	}
	return nil
}

// textSpec checks a text's options before anything is read and fills in
// the defaults.
func textSpec(textField, ctxField, protoField string, t TextInput) (TextInput, error) {
	if t.Text == "" {
		return t, problem(textField, "", "not given, but the evaluation options ask for an evaluation",
			fmt.Sprintf("give {%s} a text file, or drop {%s} and {%s}", textField, ctxField, protoField), nil)
	}
	if t.Protocol == "" {
		t.Protocol = string(infer.ProtocolFull)
	}
	if t.Ctx == 0 {
		t.Ctx = DefaultEvalCtx
	}
	if _, err := infer.CountWindows(0, infer.Protocol(t.Protocol), 4); err != nil {
		return t, problem(protoField, "", fmt.Sprintf("unknown protocol %q", t.Protocol), "use full or llama.cpp", err)
	}
	if t.Ctx < 4 {
		return t, problem(ctxField, "", fmt.Sprintf("window length %d is too small", t.Ctx), "give a length of at least 4 (256 is usual)", nil)
	}
	return t, nil
}

// credentialChecker is a store that can say whether it has credentials
// (store.S3).
type credentialChecker interface {
	CheckCredentials(ctx context.Context) error
}

// openChecked opens the store of a location and makes sure a store that
// needs credentials has them.
func (a *Activities) openChecked(ctx context.Context, field, loc string) (store.Store, error) {
	if loc == "" {
		return nil, problem(field, "", "not given", fmt.Sprintf("give {%s} a directory, file:///path or s3://bucket/prefix", field), nil)
	}
	s, err := a.open(loc)
	if err != nil {
		return nil, problem(field, "", err.Error(), fmt.Sprintf("give {%s} a directory, file:///path or s3://bucket/prefix", field), err)
	}
	if cc, ok := s.(credentialChecker); ok {
		cctx, cancel := context.WithTimeout(ctx, credentialsTimeout)
		defer cancel()
		if err := cc.CheckCredentials(cctx); err != nil {
			return nil, problem(field, loc, "no S3 credentials: "+store.EnvAccessKey+" is not set and no IAM role gave any",
				"export "+store.EnvAccessKey+" and "+store.EnvSecretKey+" (and "+store.EnvEndpoint+" for MinIO) where adaptq runs", err)
		}
	}
	return s, nil
}

// refusal turns a store's refusal (no permission, wrong credentials, a
// file where a folder should be) into a Problem; other errors stay faults.
func refusal(field, loc string, err error, fix string) error {
	switch {
	case errors.Is(err, store.ErrDenied):
		return problem(field, loc, "the store refuses access: "+lastCause(err), "check the S3 credentials and their permissions on "+Display(loc), err)
	case errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS):
		return problem(field, loc, "cannot be read or written: "+lastCause(err), fix, err)
	case errors.Is(err, syscall.ENOTDIR):
		return problem(field, loc, "a part of the path is a file, not a folder", fix, err)
	}
	return err
}

// lastCause is the innermost part of an error's text ("permission
// denied", "connection refused").
func lastCause(err error) string {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			break
		}
		err = u
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return strings.Trim(msg, `"`)
}

// checkModel opens the checkpoint: config.json, the index and every
// safetensors header, each tensor checked against the config.
func checkModel(ctx context.Context, src store.Store, loc string) (*model.Checkpoint, error) {
	const fix = "give {model} the folder (file:// or s3:// location) holding config.json and the *.safetensors files"
	if _, err := src.Stat(ctx, model.ConfigFile); err != nil {
		what := "holds no " + model.ConfigFile + ": no checkpoint here"
		if l, ok := src.(*store.Local); ok {
			if st, serr := os.Stat(l.Root()); errors.Is(serr, fs.ErrNotExist) {
				what = "does not exist"
			} else if serr == nil && !st.IsDir() {
				what = "is a file, not a checkpoint folder"
			}
		}
		if errors.Is(err, store.ErrNotFound) || strings.HasPrefix(what, "is a file") {
			return nil, problem(FieldModel, loc, what, fix, err)
		}
		if p := refusal(FieldModel, loc, err, fix); p != err {
			return nil, p
		}
		return nil, fmt.Errorf("check %s: %w", store.Describe(src, model.ConfigFile), err)
	}
	ck, err := model.Open(ctx, src)
	if errors.Is(err, model.ErrInvalid) {
		where, what := splitLocated(err.Error(), src.Location(), loc)
		return nil, problem(FieldModel, where, what, "give {model} a checkpoint adaptq reads (`adaptq inspect <location>` checks one)", err)
	} else if err != nil {
		if p := refusal(FieldModel, loc, err, fix); p != err {
			return nil, p
		}
		return nil, err
	}
	return ck, nil
}

// splitLocated splits an error text that starts with a location under
// storeLoc ("file:///m/config.json: model_type ...") into that location
// and the rest; a text that starts otherwise is located at loc.
func splitLocated(msg, storeLoc, loc string) (where, what string) {
	msg = strings.TrimPrefix(msg, "open checkpoint: ")
	if !strings.HasPrefix(msg, storeLoc) {
		return loc, msg
	}
	rest := msg[len(storeLoc):]
	end := strings.IndexAny(rest, " ")
	if end < 0 {
		return loc, msg
	}
	where = msg[:len(storeLoc)+end]
	what = strings.TrimPrefix(rest[end:], " ")
	where = strings.TrimSuffix(where, ":")
	return where, strings.ReplaceAll(what, storeLoc, Display(storeLoc))
}

// checkTokenizer reads and parses the model's tokenizer.json, which the
// GGUF file embeds and the evaluation tokenizes with.
func checkTokenizer(ctx context.Context, src store.Store) (*tokenizer.Tokenizer, error) {
	where := store.Describe(src, model.TokenizerFile)
	b, err := store.ReadAll(ctx, src, model.TokenizerFile)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, problem(FieldModel, where, "not found (the GGUF file embeds the model's tokenizer)", "put the checkpoint's tokenizer.json beside its config.json", err)
	case err != nil:
		return nil, refusal(FieldModel, where, err, "make the checkpoint's tokenizer.json readable")
	}
	tok, err := tokenizer.Parse(b)
	if err != nil {
		return nil, problem(FieldModel, where, "not a tokenizer adaptq reads: "+err.Error(), "use the tokenizer.json that came with the checkpoint", err)
	}
	return tok, nil
}

// checkFile makes sure the object at loc exists, is not empty and can be
// read; it returns its store and key.
func (a *Activities) checkFile(ctx context.Context, field, loc, kind string) (store.Store, string, error) {
	fix := fmt.Sprintf("give {%s} %s", field, kind)
	dir, key, err := store.SplitObject(loc)
	if err != nil {
		return nil, "", problem(field, "", err.Error(), fix, err)
	}
	s, err := a.openChecked(ctx, field, dir)
	if err != nil {
		return nil, "", err
	}
	info, err := s.Stat(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		what := "not found"
		if l, ok := s.(*store.Local); ok {
			if st, serr := os.Stat(filepath.Join(l.Root(), filepath.FromSlash(key))); serr == nil && st.IsDir() {
				what = "is a folder, not a file"
			}
		}
		return nil, "", problem(field, loc, what, fix, err)
	} else if err != nil {
		return nil, "", refusal(field, loc, err, fix)
	}
	if info.Size == 0 {
		return nil, "", problem(field, loc, "is empty", fix, nil)
	}
	rc, err := s.GetRange(ctx, key, 0, 1)
	if err != nil {
		return nil, "", refusal(field, loc, err, fix)
	}
	rc.Close()
	return s, key, nil
}

// checkText makes sure a text exists, is UTF-8 text and makes at least one
// window of t.Ctx tokens with the model's tokenizer under t.Protocol.
func (a *Activities) checkText(ctx context.Context, field, ctxField string, t TextInput, tok *tokenizer.Tokenizer, cfg *model.Config, tokWhere string) error {
	s, key, err := a.checkFile(ctx, field, t.Text, "an existing UTF-8 text file")
	if err != nil {
		return err
	}
	b, err := store.ReadAll(ctx, s, key)
	if err != nil {
		return refusal(field, t.Text, err, fmt.Sprintf("give {%s} a text file adaptq can read", field))
	}
	if i, what := notText(b); i >= 0 {
		return problem(field, t.Text, fmt.Sprintf("not UTF-8 text (%s at byte %d)", what, i), fmt.Sprintf("give {%s} a UTF-8 text file", field), nil)
	}
	if _, ok := BOS(tok, cfg); !ok {
		return problem(FieldModel, tokWhere, "defines no BOS token (nor does config.json's bos_token_id), which every evaluation window starts with", "use the tokenizer.json that came with the checkpoint", nil)
	}
	n := len(tok.Encode(string(b), false))
	k, err := infer.CountWindows(n, infer.Protocol(t.Protocol), t.Ctx)
	if err != nil {
		return problem(ctxField, "", err.Error(), "give a length of at least 4 and protocol full or llama.cpp", err)
	}
	if k == 0 {
		need := t.Ctx - 1 // full: ctx−1 ids after BOS; llama.cpp: BOS and ctx−1 ids
		return problem(field, t.Text, fmt.Sprintf("%d tokens, less than one window of %d (protocol %s needs %d)", n, t.Ctx, t.Protocol, need),
			fmt.Sprintf("give a longer text or a smaller {%s}", ctxField), nil)
	}
	return nil
}

// notText returns the offset of the first byte that makes b not UTF-8
// text (an invalid sequence or a NUL byte) and what it is, or -1.
func notText(b []byte) (int, string) {
	for i := 0; i < len(b); {
		if b[i] == 0 {
			return i, "a NUL byte"
		}
		if b[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			return i, fmt.Sprintf("invalid byte 0x%02x", b[i])
		}
		i += size
	}
	return -1, ""
}

// probeWrite writes and deletes a small object in the output, so that an
// output that cannot be written fails now, not after the first shard.
func probeWrite(ctx context.Context, out store.Store, loc string) error {
	const fix = "give {output} a location you can write"
	var rnd [8]byte
	rand.Read(rnd[:])
	key := ".adaptq-probe-" + hex.EncodeToString(rnd[:])
	if _, err := out.Put(ctx, key, strings.NewReader(""), 0); err != nil {
		if ctx.Err() != nil {
			return err
		}
		if errors.Is(err, store.ErrNotFound) { // S3: no such bucket
			return problem(FieldOutput, loc, "cannot be written: its bucket does not exist", "create the bucket first or "+fix, err)
		}
		if p := refusal(FieldOutput, loc, err, fix); p != err {
			return p
		}
		if _, ok := out.(*store.Local); ok { // a local write fails for a reason a retry does not cure
			return problem(FieldOutput, loc, "cannot be written: "+lastCause(err), fix, err)
		}
		return err
	}
	if err := out.Delete(ctx, key); err != nil {
		return fmt.Errorf("delete the probe object %s: %w", store.Describe(out, key), err)
	}
	return nil
}
