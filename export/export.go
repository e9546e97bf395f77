// Package export turns a checkpoint into adaptq's outputs in an object
// store: one shard object per layer (written once under a key derived from
// its inputs), then the stitched GGUF file and the Parquet manifest. The
// Temporal activities call the same functions; Run chains them in one
// process.
package export

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ohms-project/adaptq/gguf"
	"github.com/ohms-project/adaptq/manifest"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/quant"
	"github.com/ohms-project/adaptq/report"
	"github.com/ohms-project/adaptq/shards"
	"github.com/ohms-project/adaptq/store"
)

// Output object keys, relative to the output location.
const (
	PlanKey     = "plan.json"
	GGUFKey     = "model.gguf"
	ManifestKey = "manifest.parquet"
)

// ShardRecord is the small summary of one finished shard: what a workflow
// carries (keys, sizes, checksums), never tensor bytes.
type ShardRecord struct {
	Shard      string  `json:"shard"`
	Key        string  `json:"key"`        // the shard object
	ResultKey  string  `json:"result_key"` // its per-tensor results (JSON)
	Size       int64   `json:"size"`
	Checksum   string  `json:"checksum"`
	RawSize    int64   `json:"raw_size"`
	StoredSize int64   `json:"stored_size"`
	Weights    int64   `json:"weights"`
	Bytes      int64   `json:"bytes"` // quantized tensor bytes
	MaxRelErr  float64 `json:"max_rel_error"`
	Reused     bool    `json:"reused"` // found finished in the store
	// Seconds is how long the activity that produced the record ran
	// (measured by it; 0 outside Temporal).
	Seconds float64 `json:"seconds,omitempty"`
	// Started is when that activity started and Worker the process that
	// ran it (Temporal's default identity, pid@host); zero outside
	// Temporal.
	Started time.Time `json:"started,omitzero"`
	Worker  string    `json:"worker,omitempty"`
}

// ShardTime is one shard's entry of the manifest's "shard_times" metadata
// (a JSON array in plan order): when its activity started, how long it
// ran, on which worker, and whether it reused a finished shard object.
type ShardTime struct {
	Shard   string    `json:"shard"`
	Started time.Time `json:"started"`
	Seconds float64   `json:"seconds"`
	Worker  string    `json:"worker,omitempty"`
	Reused  bool      `json:"reused,omitempty"`
}

// ShardTimesKey is the manifest metadata key of the shards' times; it is
// set only when the records were timed (a Temporal run).
const ShardTimesKey = "shard_times"

// ShardResult is the JSON object stored beside a shard object.
type ShardResult struct {
	Shard      string                `json:"shard"`
	Key        string                `json:"key"`
	RawSize    int64                 `json:"raw_size"`
	StoredSize int64                 `json:"stored_size"`
	Tensors    []shards.TensorResult `json:"tensors"`
}

// WritePlan stores the plan as plan.json and returns its key.
func WritePlan(ctx context.Context, out store.Store, p *shards.Plan) (string, error) {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return "", err
	}
	if _, err := out.Put(ctx, PlanKey, bytes.NewReader(b), int64(len(b))); err != nil {
		return "", fmt.Errorf("write plan: %w", err)
	}
	return PlanKey, nil
}

// ReadPlan loads a plan written by WritePlan.
func ReadPlan(ctx context.Context, out store.Store, key string) (*shards.Plan, error) {
	b, err := store.ReadAll(ctx, out, key)
	if err != nil {
		return nil, err
	}
	var p shards.Plan
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%s: %w", store.Describe(out, key), err)
	}
	return &p, nil
}

// resultKey is where a shard's results live.
func resultKey(objectKey string) string { return strings.TrimSuffix(objectKey, ".adqs") + ".json" }

// WriteShard quantizes one shard and stores its object and results, each
// created once: when both already exist (a retry, or a rerun with the same
// inputs) the finished shard is reused after its checksum is verified.
func WriteShard(ctx context.Context, ck *model.Checkpoint, out store.Store, p *shards.Plan, s shards.Shard, r shards.Recipe, progress shards.Progress) (ShardRecord, error) {
	return WriteShardWeighted(ctx, ck, out, p, s, r, nil, progress)
}

// WriteShardWeighted is WriteShard with the importance of the recipe's
// importance matrix (r.Imatrix; see shards.QuantizeWeighted).
func WriteShardWeighted(ctx context.Context, ck *model.Checkpoint, out store.Store, p *shards.Plan, s shards.Shard, r shards.Recipe, imp shards.Importance, progress shards.Progress) (ShardRecord, error) {
	key := p.Key(s, r)
	if rec, err := finishedShard(ctx, out, s, key); err == nil {
		return rec, nil
	}
	o, err := shards.QuantizeWeighted(ctx, ck, s, r, imp, progress)
	if err != nil {
		return ShardRecord{}, err
	}
	res := ShardResult{Shard: s.Name, Key: key, RawSize: o.Object.RawSize, StoredSize: o.Object.StoredSize, Tensors: o.Tensors}
	rb, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return ShardRecord{}, err
	}
	// The object streams from the tensors' bytes: no second copy of the
	// layer in memory.
	pr, pw := io.Pipe()
	go func() {
		_, err := o.Object.WriteTo(pw)
		pw.CloseWithError(err)
	}()
	info, err := out.PutIfAbsent(ctx, key, pr, o.Object.Size())
	pr.CloseWithError(err)
	if errors.Is(err, store.ErrExists) {
		info, err = out.Stat(ctx, key) // same inputs, same bytes: an earlier attempt wrote it
	}
	if err != nil {
		return ShardRecord{}, fmt.Errorf("shard %s: %w", s.Name, err)
	}
	if _, err := out.PutIfAbsent(ctx, resultKey(key), bytes.NewReader(rb), int64(len(rb))); err != nil && !errors.Is(err, store.ErrExists) {
		return ShardRecord{}, fmt.Errorf("shard %s: %w", s.Name, err)
	}
	sum, err := store.Checksum(ctx, out, key)
	if err != nil {
		return ShardRecord{}, err
	}
	return record(s.Name, key, info.Size, sum, &res), nil
}

func record(name, key string, size int64, sum string, res *ShardResult) ShardRecord {
	rec := ShardRecord{Shard: name, Key: key, ResultKey: resultKey(key), Size: size, Checksum: sum,
		RawSize: res.RawSize, StoredSize: res.StoredSize}
	for _, t := range res.Tensors {
		n := int64(1)
		for _, d := range t.Shape {
			n *= d
		}
		rec.Weights += n
		rec.Bytes += t.Bytes
		rec.MaxRelErr = max(rec.MaxRelErr, t.RelError)
	}
	return rec
}

// finishedShard returns the record of a shard whose object and results are
// already stored and whose object decodes and matches its results.
func finishedShard(ctx context.Context, out store.Store, s shards.Shard, key string) (ShardRecord, error) {
	res, err := readResult(ctx, out, resultKey(key))
	if err != nil {
		return ShardRecord{}, err
	}
	rc, err := out.Get(ctx, key)
	if err != nil {
		return ShardRecord{}, err
	}
	n := 0
	err = shards.Stream(rc, func(e shards.TensorEntry, _ io.Reader) error {
		if n >= len(res.Tensors) || res.Tensors[n].GGUFName != e.Name || uint64(res.Tensors[n].Bytes) != e.Length {
			return fmt.Errorf("entry %d (%s) is not in the results", n, e.Name)
		}
		n++
		return nil
	})
	rc.Close()
	if err != nil || n != len(res.Tensors) {
		return ShardRecord{}, fmt.Errorf("shard %s: stored object does not match its results: %v", s.Name, err)
	}
	info, err := out.Stat(ctx, key)
	if err != nil {
		return ShardRecord{}, err
	}
	sum, err := store.Checksum(ctx, out, key)
	if err != nil {
		return ShardRecord{}, err
	}
	rec := record(s.Name, key, info.Size, sum, res)
	rec.Reused = true
	return rec, nil
}

func readResult(ctx context.Context, out store.Store, key string) (*ShardResult, error) {
	b, err := store.ReadAll(ctx, out, key)
	if err != nil {
		return nil, err
	}
	var res ShardResult
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("%s: %w", store.Describe(out, key), err)
	}
	return &res, nil
}

// Summary is what a finished export measured.
type Summary struct {
	GGUFKey     string `json:"gguf_key"`
	GGUFSize    int64  `json:"gguf_size"`
	GGUFSHA256  string `json:"gguf_sha256"`
	ManifestKey string `json:"manifest_key"`
	Tensors     int    `json:"tensors"`
	// Weights is the model's parameter count (tied embeddings once); a
	// rotation that unties lm_head adds a tensor to the GGUF, whose bytes
	// count in Bytes but whose weights do not count again here.
	Weights       int64   `json:"weights"`
	Bytes         int64   `json:"bytes"`        // tensor bytes in the GGUF
	SourceBytes   int64   `json:"source_bytes"` // tensor bytes in the checkpoint
	BitsPerWeight float64 `json:"bits_per_weight"`
	Ratio         float64 `json:"ratio"` // source bytes / quantized bytes
	Fallbacks     int     `json:"fallbacks"`
	// Composed is true when the store built the file server-side from the
	// shard objects (S3 ComposeObject) instead of a streamed upload.
	Composed bool `json:"composed,omitempty"`
}

// Stitch writes the GGUF file and the manifest, whose metadata holds the
// GGUF's SHA-256. On S3, when every part but the last is at least 5 MiB and
// the payloads are uncompressed, the file is composed server-side from the
// shard objects (see composeGGUF); otherwise it is streamed: header first,
// then each shard's tensors in plan order, every tensor's CRC checked on the
// way (a multipart upload on S3). Nothing appears under GGUFKey or
// ManifestKey unless it is complete (a composed file that fails its check
// is deleted again).
func Stitch(ctx context.Context, ck *model.Checkpoint, out store.Store, p *shards.Plan, r shards.Recipe, recs []ShardRecord) (*Summary, error) {
	if len(recs) != len(p.Shards) {
		return nil, fmt.Errorf("stitch: %d shard records for a plan of %d shards", len(recs), len(p.Shards))
	}
	results := make([]*ShardResult, len(recs))
	for i, rec := range recs {
		if rec.Shard != p.Shards[i].Name {
			return nil, fmt.Errorf("stitch: record %d is shard %s, plan says %s", i, rec.Shard, p.Shards[i].Name)
		}
		res, err := readResult(ctx, out, rec.ResultKey)
		if err != nil {
			return nil, fmt.Errorf("stitch: %w", err)
		}
		results[i] = res
	}
	tok, err := store.ReadAll(ctx, ck.Store, model.TokenizerFile)
	if err != nil {
		return nil, fmt.Errorf("stitch: the GGUF needs the tokenizer: %w", err)
	}
	tokCfg, err := store.ReadAll(ctx, ck.Store, "tokenizer_config.json")
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("stitch: %w", err)
	}
	// A copy of the tokenizer beside the GGUF lets `adaptq verify` tokenize
	// text for it.
	if _, err := out.Put(ctx, model.TokenizerFile, bytes.NewReader(tok), int64(len(tok))); err != nil {
		return nil, fmt.Errorf("stitch: %w", err)
	}
	opts := gguf.LlamaOptions{Name: lastElem(p.Model), Tokenizer: tok, TokenizerConfig: tokCfg}
	if ft, ok := r.FileType(); ok {
		v := uint32(ft)
		opts.FileType = &v
	}
	md, err := gguf.LlamaMetadata(ck.Config, opts)
	if err != nil {
		return nil, fmt.Errorf("stitch: %w", err)
	}
	plan := &gguf.Plan{Metadata: md}
	freqs, hasFreqs := gguf.RopeFreqs(ck.Config)
	if hasFreqs {
		plan.Tensors = append(plan.Tensors, gguf.TensorInfo{Name: gguf.RopeFreqsName, Dims: []uint64{uint64(len(freqs))}, Type: gguf.TypeF32, Size: uint64(4 * len(freqs))})
	}
	sum := &Summary{GGUFKey: GGUFKey, ManifestKey: ManifestKey}
	for _, res := range results {
		for _, t := range res.Tensors {
			typ, err := typeID(t.OutputType)
			if err != nil {
				return nil, fmt.Errorf("stitch: tensor %s: %w", t.Tensor, err)
			}
			dims := make([]uint64, len(t.Shape))
			for i, d := range t.Shape {
				dims[len(t.Shape)-1-i] = uint64(d)
			}
			plan.Tensors = append(plan.Tensors, gguf.TensorInfo{Name: t.GGUFName, Dims: dims, Type: typ, Size: uint64(t.Bytes)})
			sum.Tensors++
			sum.Bytes += t.Bytes
			if t.OutputType != t.RequestedType {
				sum.Fallbacks++
			}
		}
	}
	sum.Weights = ck.NumParams()
	for _, t := range ck.Tensors {
		sum.SourceBytes += t.Size
	}
	if hasFreqs {
		sum.Tensors++
		sum.Bytes += int64(4 * len(freqs))
	}
	_, _, size, err := plan.Layout()
	if err != nil {
		return nil, fmt.Errorf("stitch: %w", err)
	}
	var info store.ObjectInfo
	composed := false
	if c, ok := out.(composer); ok {
		var sha string
		info, sha, err = composeGGUF(ctx, c, plan, freqs, recs)
		switch {
		case err == nil:
			composed = true
			sum.GGUFSHA256 = sha
		case !errors.Is(err, errNoCompose):
			return nil, fmt.Errorf("stitch: compose: %w", err)
		}
	}
	if !composed {
		pr, pw := io.Pipe()
		h := sha256.New()
		go func() {
			pw.CloseWithError(writeGGUF(ctx, io.MultiWriter(pw, h), out, plan, freqs, recs))
		}()
		info, err = out.Put(ctx, GGUFKey, pr, int64(size))
		pr.CloseWithError(err)
		if err != nil {
			return nil, fmt.Errorf("stitch: %w", err)
		}
		sum.GGUFSHA256 = hex.EncodeToString(h.Sum(nil))
	}
	sum.Composed = composed
	sum.GGUFSize = info.Size
	if sum.Weights > 0 {
		sum.BitsPerWeight = float64(sum.Bytes) * 8 / float64(sum.Weights)
	}
	if sum.Bytes > 0 {
		sum.Ratio = float64(sum.SourceBytes) / float64(sum.Bytes)
	}
	m := buildManifest(p, r, recs, results, sum)
	mb, err := manifest.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("stitch: %w", err)
	}
	if _, err := out.Put(ctx, ManifestKey, bytes.NewReader(mb), int64(len(mb))); err != nil {
		return nil, fmt.Errorf("stitch: %w", err)
	}
	// report.html beside the GGUF; an evaluation refreshes it.
	if _, err := report.Write(ctx, out); err != nil {
		return nil, fmt.Errorf("stitch: %w", err)
	}
	return sum, nil
}

// writeGGUF streams the file: header, rope_freqs, then every shard's
// tensors read back from the store and checked.
func writeGGUF(ctx context.Context, w io.Writer, out store.Store, plan *gguf.Plan, freqs []float32, recs []ShardRecord) error {
	gw, err := gguf.NewWriter(w, plan)
	if err != nil {
		return err
	}
	if freqs != nil {
		if err := gw.BeginTensor(gguf.RopeFreqsName); err != nil {
			return err
		}
		if _, err := gw.Write(gguf.EncodeFloat(nil, freqs, gguf.TypeF32)); err != nil {
			return err
		}
	}
	for _, rec := range recs {
		// Each shard object is streamed tensor by tensor into the file
		// (checked on the way): memory stays at a few buffers.
		rc, err := out.Get(ctx, rec.Key)
		if err != nil {
			return err
		}
		err = shards.Stream(rc, func(e shards.TensorEntry, data io.Reader) error {
			if err := gw.BeginTensor(e.Name); err != nil {
				return err
			}
			_, err := io.Copy(gw, data)
			return err
		})
		rc.Close()
		if err != nil {
			return fmt.Errorf("shard %s (%s): %w", rec.Shard, rec.Key, err)
		}
	}
	return gw.Close()
}

func buildManifest(p *shards.Plan, r shards.Recipe, recs []ShardRecord, results []*ShardResult, sum *Summary) *manifest.Manifest {
	rj, _ := json.Marshal(r)
	m := &manifest.Manifest{Meta: map[string]string{
		"model":           p.Model,
		"source_id":       p.SourceID,
		"recipe":          string(rj),
		"codec_version":   shards.CodecVersion,
		"gguf_key":        sum.GGUFKey,
		"gguf_size":       fmt.Sprint(sum.GGUFSize),
		"gguf_sha256":     sum.GGUFSHA256,
		"weights":         fmt.Sprint(sum.Weights),
		"bytes":           fmt.Sprint(sum.Bytes),
		"source_bytes":    fmt.Sprint(sum.SourceBytes),
		"bits_per_weight": fmt.Sprintf("%.4f", sum.BitsPerWeight),
		"gguf_composed":   fmt.Sprint(sum.Composed),
	}}
	var times []ShardTime
	for _, rec := range recs {
		if rec.Seconds > 0 || !rec.Started.IsZero() {
			times = append(times, ShardTime{Shard: rec.Shard, Started: rec.Started, Seconds: rec.Seconds, Worker: rec.Worker, Reused: rec.Reused})
		}
	}
	if len(times) > 0 {
		tj, _ := json.Marshal(times)
		m.Meta[ShardTimesKey] = string(tj)
	}
	for i, res := range results {
		for _, t := range res.Tensors {
			m.Rows = append(m.Rows, manifest.Row{
				Model: p.Model, Shard: res.Shard, Tensor: t.Tensor, GGUFName: t.GGUFName, Role: t.Role, Layer: int32(t.Layer),
				Shape: t.Shape, SourceDType: t.SourceDType, OutputType: t.OutputType, RequestedType: t.RequestedType,
				BitsPerWeight: t.BitsPerWeight, Bytes: t.Bytes, SourceBytes: t.SourceBytes, RMSE: t.RMSE, RelError: t.RelError,
				CRC32C: t.CRC32C, ObjectKey: recs[i].Key, Offset: t.Offset,
			})
		}
	}
	return m
}

func typeID(name string) (uint32, error) {
	t, err := quant.ParseType(name)
	return uint32(t), err
}

func lastElem(loc string) string {
	loc = strings.TrimRight(loc, "/")
	return loc[strings.LastIndex(loc, "/")+1:]
}
