package activities

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/ohms-project/adaptq/gguf"
	"github.com/ohms-project/adaptq/infer"
	"github.com/ohms-project/adaptq/shards"
	"github.com/ohms-project/adaptq/store"
)

// IMatrixKey is where AggregateCalib writes the importance matrix in the
// output.
const IMatrixKey = "imatrix.gguf"

// CalibChunkInput is the input of CalibrateWindows: a range of the
// calibration text's windows (llama-imatrix's chunks: llama.cpp protocol
// windows, every position counted).
type CalibChunkInput struct {
	Model    string          `json:"model"` // the checkpoint being quantized
	Rotation shards.Rotation `json:"rotation"`
	Output   string          `json:"output"` // holds the ids; receives the sums
	IDsKey   string          `json:"ids_key"`
	Ctx      int             `json:"ctx"`
	BOS      int32           `json:"bos"`
	First    int             `json:"first"`
	Count    int             `json:"count"`
	// Head also collects lm_head's input.
	Head bool `json:"head,omitempty"`
}

// CalibChunk is what CalibrateWindows returns.
type CalibChunk struct {
	SumsKey string `json:"sums_key"`
	Windows int    `json:"windows"`
	Tokens  int64  `json:"tokens"`
}

// CalibrateWindows runs the model the recipe quantizes (rotated when the
// recipe rotates) over a range of windows and stores the activation sums.
// The model is loaded once per worker and kept (Activities.MaxModels).
func (a *Activities) CalibrateWindows(ctx context.Context, in CalibChunkInput) (CalibChunk, error) {
	bad := func(err error) (CalibChunk, error) {
		return CalibChunk{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, err)
	}
	out, err := a.open(in.Output)
	if err != nil {
		return bad(err)
	}
	wins, err := a.readWindows(ctx, out, in.IDsKey, infer.ProtocolLlamaCpp, in.Ctx, in.BOS)
	if err != nil {
		return CalibChunk{}, err
	}
	if in.First < 0 || in.Count <= 0 || in.First+in.Count > len(wins) {
		return bad(fmt.Errorf("windows [%d, %d) outside the %d windows of the calibration text", in.First, in.First+in.Count, len(wins)))
	}
	m, err := a.models().getCheckpoint(ctx, a, in.Model, in.Rotation)
	if err != nil {
		return CalibChunk{}, err
	}
	sums, err := m.Calibrate(ctx, wins[in.First:in.First+in.Count], infer.CalibOptions{Head: in.Head,
		Progress: func(done int) { activity.RecordHeartbeat(ctx, done) }})
	if err != nil {
		return CalibChunk{}, err
	}
	b, err := sums.MarshalBinary()
	if err != nil {
		return CalibChunk{}, err
	}
	key := fmt.Sprintf("calib/sums-%s-%06d-%06d.bin", hashOf(in.Model, rotationID(in.Rotation), in.IDsKey, fmt.Sprint(in.Ctx, in.Head))[:16], in.First, in.Count)
	if _, err := out.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
		return CalibChunk{}, err
	}
	c := CalibChunk{SumsKey: key, Windows: len(sums.Windows)}
	if len(sums.Sites) > 0 {
		c.Tokens = sums.Sites[0].Tokens
	}
	return c, nil
}

// readWindows reads stored token ids and cuts them into a protocol's windows.
func (a *Activities) readWindows(ctx context.Context, out store.Store, idsKey string, p infer.Protocol, ctxLen int, bos int32) ([]infer.Window, error) {
	raw, err := store.ReadAll(ctx, out, idsKey)
	if err != nil {
		return nil, err
	}
	ids, err := infer.ReadIDs(strings.NewReader(string(raw)))
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, err)
	}
	wins, err := infer.Windows(ids, p, ctxLen, bos)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, err)
	}
	return wins, nil
}

// rotationID names a rotation in keys and in the imatrix metadata
// (shards.Rotation.ID).
func rotationID(r shards.Rotation) string { return r.ID() }

// CalibAggregateInput is the input of AggregateCalib.
type CalibAggregateInput struct {
	Output   string          `json:"output"`
	SumsKeys []string        `json:"sums_keys"`
	Dataset  string          `json:"dataset"` // the calibration text's location
	Ctx      int             `json:"ctx"`
	Rotation shards.Rotation `json:"rotation"`
}

// CalibResult is what AggregateCalib (and the CalibrateModel workflow)
// returns.
type CalibResult struct {
	IMatrixKey string `json:"imatrix_key"` // in the output
	SHA256     string `json:"sha256"`      // of the imatrix file
	Entries    int    `json:"entries"`
	Windows    int    `json:"windows"`
	Tokens     int64  `json:"tokens"`
}

// KeyIMatrixRotation is the imatrix metadata key saying in which basis the
// activations were collected ("none", or the rotation and its seed).
const KeyIMatrixRotation = shards.KeyIMatrixRotation

// AggregateCalib merges the stored sums of every chunk (exactly: the result
// does not depend on the chunking) and writes imatrix.gguf in llama.cpp's
// format.
func (a *Activities) AggregateCalib(ctx context.Context, in CalibAggregateInput) (CalibResult, error) {
	out, err := a.open(in.Output)
	if err != nil {
		return CalibResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, err)
	}
	parts := make([]*infer.CalibSums, 0, len(in.SumsKeys))
	for _, k := range in.SumsKeys {
		b, err := store.ReadAll(ctx, out, k)
		if err != nil {
			return CalibResult{}, err
		}
		s, err := infer.UnmarshalCalib(b)
		if err != nil {
			// A damaged object is rewritten by rerunning its chunk; say which.
			return CalibResult{}, fmt.Errorf("%s: %w", store.Describe(out, k), err)
		}
		parts = append(parts, s)
		activity.RecordHeartbeat(ctx, len(parts))
	}
	merged, err := infer.MergeCalib(parts...)
	if err != nil {
		return CalibResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, err)
	}
	im, err := merged.IMatrix([]string{in.Dataset}, in.Ctx)
	if err != nil {
		return CalibResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, err)
	}
	im.Extra = gguf.Metadata{{Key: KeyIMatrixRotation, Value: rotationID(in.Rotation)}}
	var buf bytes.Buffer
	if err := gguf.WriteIMatrix(&buf, im); err != nil {
		return CalibResult{}, err
	}
	if _, err := out.Put(ctx, IMatrixKey, bytes.NewReader(buf.Bytes()), int64(buf.Len())); err != nil {
		return CalibResult{}, err
	}
	sum := sha256.Sum256(buf.Bytes())
	res := CalibResult{IMatrixKey: IMatrixKey, SHA256: hex.EncodeToString(sum[:]), Entries: len(im.Entries), Windows: len(merged.Windows)}
	if len(merged.Sites) > 0 {
		res.Tokens = merged.Sites[0].Tokens
	}
	return res, nil
}
