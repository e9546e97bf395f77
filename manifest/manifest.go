// Package manifest defines the Arrow schema of adaptq's run manifest — one
// row per tensor saying exactly what was done to it — and reads and writes it
// as Parquet through arrow-go's pqarrow.
package manifest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// Row is one tensor of a run.
type Row struct {
	Model         string  `json:"model"`          // source model location
	Shard         string  `json:"shard"`          // shard name, e.g. "layer-007", "embed", "head"
	Tensor        string  `json:"tensor"`         // Hugging Face name
	GGUFName      string  `json:"gguf_name"`      // llama.cpp name
	Role          string  `json:"role"`           // model.Role name
	Layer         int32   `json:"layer"`          // -1 outside the decoder layers
	Shape         []int64 `json:"shape"`          // Hugging Face order
	SourceDType   string  `json:"source_dtype"`   // F32, F16, BF16
	OutputType    string  `json:"output_type"`    // ggml type written
	RequestedType string  `json:"requested_type"` // what the recipe asked for (differs on fallback)
	BitsPerWeight float64 `json:"bits_per_weight"`
	Bytes         int64   `json:"bytes"`        // quantized bytes
	SourceBytes   int64   `json:"source_bytes"` // bytes in the checkpoint
	RMSE          float64 `json:"rmse"`         // root mean squared error against the (rotated) source
	RelError      float64 `json:"rel_error"`    // ‖W−Ŵ‖/‖W‖
	CRC32C        uint32  `json:"crc32c"`       // of the quantized bytes
	ObjectKey     string  `json:"object_key"`   // shard object holding the bytes
	Offset        int64   `json:"offset"`       // of the bytes in the shard's raw payload
}

// Manifest is the rows of a run and run-level key/value metadata (recipe,
// seed, GGUF key, its SHA-256, totals), stored as the Parquet file's
// key/value metadata under "adaptq.".
type Manifest struct {
	Meta map[string]string
	Rows []Row
}

// metaPrefix marks adaptq's run-level keys in the Parquet key/value metadata.
const metaPrefix = "adaptq."

// Schema is the manifest's Arrow schema: one row per tensor.
func Schema() *arrow.Schema {
	return arrow.NewSchema([]arrow.Field{
		{Name: "model", Type: arrow.BinaryTypes.String},
		{Name: "shard", Type: arrow.BinaryTypes.String},
		{Name: "tensor", Type: arrow.BinaryTypes.String},
		{Name: "gguf_name", Type: arrow.BinaryTypes.String},
		{Name: "role", Type: arrow.BinaryTypes.String},
		{Name: "layer", Type: arrow.PrimitiveTypes.Int32},
		{Name: "shape", Type: arrow.ListOf(arrow.PrimitiveTypes.Int64)},
		{Name: "source_dtype", Type: arrow.BinaryTypes.String},
		{Name: "output_type", Type: arrow.BinaryTypes.String},
		{Name: "requested_type", Type: arrow.BinaryTypes.String},
		{Name: "bits_per_weight", Type: arrow.PrimitiveTypes.Float64},
		{Name: "bytes", Type: arrow.PrimitiveTypes.Int64},
		{Name: "source_bytes", Type: arrow.PrimitiveTypes.Int64},
		{Name: "rmse", Type: arrow.PrimitiveTypes.Float64},
		{Name: "rel_error", Type: arrow.PrimitiveTypes.Float64},
		{Name: "crc32c", Type: arrow.PrimitiveTypes.Uint32},
		{Name: "object_key", Type: arrow.BinaryTypes.String},
		{Name: "offset", Type: arrow.PrimitiveTypes.Int64},
	}, nil)
}

// Write writes the manifest to w as one Parquet file (zstd-compressed
// columns).
func Write(w io.Writer, m *Manifest) error {
	mem := memory.NewGoAllocator()
	schema := Schema()
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	str := func(i int) *array.StringBuilder { return b.Field(i).(*array.StringBuilder) }
	i64 := func(i int) *array.Int64Builder { return b.Field(i).(*array.Int64Builder) }
	f64 := func(i int) *array.Float64Builder { return b.Field(i).(*array.Float64Builder) }
	shape := b.Field(6).(*array.ListBuilder)
	shapeVals := shape.ValueBuilder().(*array.Int64Builder)
	for _, r := range m.Rows {
		str(0).Append(r.Model)
		str(1).Append(r.Shard)
		str(2).Append(r.Tensor)
		str(3).Append(r.GGUFName)
		str(4).Append(r.Role)
		b.Field(5).(*array.Int32Builder).Append(r.Layer)
		shape.Append(true)
		shapeVals.AppendValues(r.Shape, nil)
		str(7).Append(r.SourceDType)
		str(8).Append(r.OutputType)
		str(9).Append(r.RequestedType)
		f64(10).Append(r.BitsPerWeight)
		i64(11).Append(r.Bytes)
		i64(12).Append(r.SourceBytes)
		f64(13).Append(r.RMSE)
		f64(14).Append(r.RelError)
		b.Field(15).(*array.Uint32Builder).Append(r.CRC32C)
		str(16).Append(r.ObjectKey)
		i64(17).Append(r.Offset)
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	props := parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Zstd))
	fw, err := pqarrow.NewFileWriter(schema, w, props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	keys := make([]string, 0, len(m.Meta))
	for k := range m.Meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := fw.AppendKeyValueMetadata(metaPrefix+k, m.Meta[k]); err != nil {
			fw.Close()
			return fmt.Errorf("manifest: metadata %q: %w", k, err)
		}
	}
	if err := fw.Write(rec); err != nil {
		fw.Close()
		return fmt.Errorf("manifest: %w", err)
	}
	if err := fw.Close(); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	return nil
}

// Marshal returns the manifest as Parquet bytes.
func Marshal(m *Manifest) ([]byte, error) {
	var buf bytes.Buffer
	if err := Write(&buf, m); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Read parses a Parquet manifest and checks its columns against the schema.
// arrow-go panics on some corrupt files (found by FuzzRead); Read turns such
// a panic into an error.
func Read(ctx context.Context, data []byte) (m *Manifest, err error) {
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("manifest: corrupt Parquet file: %v", r)
		}
	}()
	return read(ctx, data)
}

func read(ctx context.Context, data []byte) (*Manifest, error) {
	pf, err := file.NewParquetReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("manifest: not a Parquet file: %w", err)
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	tbl, err := fr.ReadTable(ctx)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	defer tbl.Release()
	want := Schema()
	got := tbl.Schema()
	if got.NumFields() != want.NumFields() {
		return nil, fmt.Errorf("manifest: %d columns, want %d", got.NumFields(), want.NumFields())
	}
	for i, f := range want.Fields() {
		g := got.Field(i)
		if g.Name != f.Name || !arrow.TypeEqual(g.Type, f.Type) {
			return nil, fmt.Errorf("manifest: column %d is %s %s, want %s %s", i, g.Name, g.Type, f.Name, f.Type)
		}
	}
	m := &Manifest{Meta: map[string]string{}}
	for _, kv := range pf.MetaData().KeyValueMetadata() {
		if k, ok := strings.CutPrefix(kv.Key, metaPrefix); ok && kv.Value != nil {
			m.Meta[k] = *kv.Value
		}
	}
	tr := array.NewTableReader(tbl, 1<<16)
	defer tr.Release()
	for tr.Next() {
		rec := tr.RecordBatch()
		col := func(i int) arrow.Array { return rec.Column(i) }
		s := func(i, r int) string { return col(i).(*array.String).Value(r) }
		for r := 0; r < int(rec.NumRows()); r++ {
			shapeArr := col(6).(*array.List)
			beg, end := shapeArr.ValueOffsets(r)
			vals := shapeArr.ListValues().(*array.Int64)
			shape := make([]int64, 0, end-beg)
			for j := beg; j < end; j++ {
				shape = append(shape, vals.Value(int(j)))
			}
			m.Rows = append(m.Rows, Row{
				Model: s(0, r), Shard: s(1, r), Tensor: s(2, r), GGUFName: s(3, r), Role: s(4, r),
				Layer: col(5).(*array.Int32).Value(r), Shape: shape,
				SourceDType: s(7, r), OutputType: s(8, r), RequestedType: s(9, r),
				BitsPerWeight: col(10).(*array.Float64).Value(r),
				Bytes:         col(11).(*array.Int64).Value(r), SourceBytes: col(12).(*array.Int64).Value(r),
				RMSE: col(13).(*array.Float64).Value(r), RelError: col(14).(*array.Float64).Value(r),
				CRC32C: col(15).(*array.Uint32).Value(r), ObjectKey: s(16, r), Offset: col(17).(*array.Int64).Value(r),
			})
		}
	}
	if err := tr.Err(); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return m, nil
}

// Totals sums a manifest: weights, quantized and source bytes, and the
// whole-model bits per weight (every tensor counted, embeddings and norms
// included).
type Totals struct {
	Weights       int64
	Bytes         int64
	SourceBytes   int64
	BitsPerWeight float64
	Ratio         float64 // source bytes / quantized bytes
}

// Totals computes the manifest's totals.
func (m *Manifest) Totals() Totals {
	var t Totals
	for _, r := range m.Rows {
		n := int64(1)
		for _, d := range r.Shape {
			n *= d
		}
		t.Weights += n
		t.Bytes += r.Bytes
		t.SourceBytes += r.SourceBytes
	}
	if t.Weights > 0 {
		t.BitsPerWeight = float64(t.Bytes) * 8 / float64(t.Weights)
	}
	if t.Bytes > 0 {
		t.Ratio = float64(t.SourceBytes) / float64(t.Bytes)
	}
	return t
}
