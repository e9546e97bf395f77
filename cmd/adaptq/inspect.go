package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/ohms-project/adaptq/internal/progress"
	"github.com/ohms-project/adaptq/manifest"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/store"
)

// inspectReport is what `adaptq inspect --json` prints.
type inspectReport struct {
	Location     string           `json:"location"`
	ModelType    string           `json:"model_type"`
	Architecture []string         `json:"architectures,omitempty"`
	Config       *model.Config    `json:"config"`
	Params       int64            `json:"parameters"`
	DTypes       map[string]int64 `json:"dtype_bytes"`
	SizeOnDisk   int64            `json:"size_on_disk"`
	Files        []model.FileInfo `json:"files"`
	Tensors      []inspectTensor  `json:"tensors"`
	Scanned      bool             `json:"scanned"`
	NonFinite    int64            `json:"non_finite_values"`
	Unknown      []string         `json:"unknown_tensors,omitempty"`
}

type inspectTensor struct {
	model.Tensor
	NaN     int64   `json:"nan,omitempty"`
	Inf     int64   `json:"inf,omitempty"`
	AbsMean float64 `json:"abs_mean,omitempty"`
	RMS     float64 `json:"rms,omitempty"`
}

func runInspect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("inspect", "[--json] [--scan=false] <model location | manifest.parquet>", stderr)
	asJSON := fs.Bool("json", false, "print a JSON report for machines")
	scan := fs.Bool("scan", true, "read every tensor to count NaN/Inf values (reads the whole model)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return fmt.Errorf("%w: want one model location, got %d", errUsage, len(pos))
	}
	if strings.HasSuffix(strings.ToLower(pos[0]), ".parquet") {
		return inspectManifest(ctx, pos[0], *asJSON, stdout)
	}
	s, err := store.Open(pos[0])
	if err != nil {
		return err
	}
	ck, err := model.Open(ctx, s)
	if err != nil {
		return err
	}
	rep := inspectReport{
		Location: s.Location(), ModelType: ck.Config.ModelType, Architecture: ck.Config.Architectures,
		Config: ck.Config, Params: ck.NumParams(), DTypes: map[string]int64{}, SizeOnDisk: ck.SizeOnDisk(),
		Files: ck.Files, Scanned: *scan,
	}
	var total int64
	for _, t := range ck.Tensors {
		rep.DTypes[t.DType.String()] += t.Size
		total += t.Size
		if t.Role == model.RoleUnknown {
			rep.Unknown = append(rep.Unknown, t.Name)
		}
	}
	var bar *progress.Bar
	if *scan {
		bar = progress.New(stderr, "scan", total, true)
	}
	var done int64
	for _, t := range ck.Tensors {
		it := inspectTensor{Tensor: t}
		if *scan {
			st, err := ck.ScanStats(ctx, t.Name)
			if err != nil {
				return err
			}
			it.NaN, it.Inf, it.AbsMean, it.RMS = st.NaN, st.Inf, st.AbsMean, st.RMS
			rep.NonFinite += st.NaN + st.Inf
			done += t.Size
			bar.Set(done)
		}
		rep.Tensors = append(rep.Tensors, it)
	}
	if bar != nil {
		bar.Done()
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printInspect(stdout, &rep)
	return nil
}

func printInspect(w io.Writer, r *inspectReport) {
	c := r.Config
	fmt.Fprintf(w, "location      %s\n", r.Location)
	fmt.Fprintf(w, "architecture  %s (%s)\n", r.ModelType, strings.Join(r.Architecture, ", "))
	fmt.Fprintf(w, "shape         hidden %d, intermediate %d, layers %d, heads %d / kv %d, head_dim %d, vocab %d\n",
		c.HiddenSize, c.IntermediateSize, c.NumLayers, c.NumHeads, c.NumKVHeads, c.HeadDim, c.VocabSize)
	rope := fmt.Sprintf("rope_theta %g", c.RopeTheta)
	if c.RopeScaling != nil {
		rope += fmt.Sprintf(", rope_scaling %s ×%g", c.RopeScaling.Type, c.RopeScaling.Factor)
	}
	fmt.Fprintf(w, "options       rms_norm_eps %g, %s, tied embeddings %v, attention bias %v, qk-norm %v\n",
		c.RMSNormEps, rope, c.TieWordEmbeddings, c.AttentionBias, c.QKNorm)
	fmt.Fprintf(w, "parameters    %s (%d)\n", human(r.Params), r.Params)
	var dts []string
	for k, v := range r.DTypes {
		dts = append(dts, fmt.Sprintf("%s %s", k, progress.FormatBytes(v)))
	}
	sort.Strings(dts)
	fmt.Fprintf(w, "dtype         %s (config says %q)\n", strings.Join(dts, ", "), c.TorchDType)
	fmt.Fprintf(w, "size on disk  %s (%d bytes in %d file(s))\n", progress.FormatBytes(r.SizeOnDisk), r.SizeOnDisk, len(r.Files))
	if r.Scanned {
		fmt.Fprintf(w, "non-finite    %d NaN/Inf values\n", r.NonFinite)
	} else {
		fmt.Fprintf(w, "non-finite    not scanned (--scan=false)\n")
	}
	if len(r.Unknown) > 0 {
		fmt.Fprintf(w, "unknown       %d tensor(s) with no role, ignored: %s\n", len(r.Unknown), strings.Join(r.Unknown, ", "))
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	hdr := "name\trole\tlayer\tshape\tdtype\tbytes\tfile"
	if r.Scanned {
		hdr += "\tNaN\tInf\trms"
	}
	fmt.Fprintln(tw, hdr)
	for _, t := range r.Tensors {
		layer := "-"
		if t.Layer >= 0 {
			layer = fmt.Sprint(t.Layer)
		}
		role := t.Role.String()
		if t.Bias {
			role += " (bias)"
		}
		line := fmt.Sprintf("%s\t%s\t%s\t%v\t%s\t%d\t%s", t.Name, role, layer, t.Shape, t.DType, t.Size, t.File)
		if r.Scanned {
			line += fmt.Sprintf("\t%d\t%d\t%.4g", t.NaN, t.Inf, t.RMS)
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
}

// human renders a count with K/M/B suffixes.
func human(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2fB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2fM", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1fK", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}

// inspectManifest prints a run's Parquet manifest: its metadata, a row per
// tensor and the totals.
func inspectManifest(ctx context.Context, loc string, asJSON bool, w io.Writer) error {
	dir, key, err := store.SplitObject(loc)
	if err != nil {
		return err
	}
	s, err := store.Open(dir)
	if err != nil {
		return err
	}
	b, err := store.ReadAll(ctx, s, key)
	if err != nil {
		return err
	}
	m, err := manifest.Read(ctx, b)
	if err != nil {
		return fmt.Errorf("%s: %w", store.Describe(s, key), err)
	}
	tot := m.Totals()
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Meta   map[string]string `json:"meta"`
			Rows   []manifest.Row    `json:"rows"`
			Totals manifest.Totals   `json:"totals"`
		}{m.Meta, m.Rows, tot})
	}
	keys := make([]string, 0, len(m.Meta))
	for k := range m.Meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "%-16s %s\n", k, m.Meta[k])
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "tensor\tgguf name\trole\tlayer\tshape\tsource\tasked\twritten\tbits/w\tbytes\trmse\trel err\tshard")
	for _, r := range m.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%v\t%s\t%s\t%s\t%.3f\t%d\t%.3g\t%.4f\t%s\n", r.Tensor, r.GGUFName, r.Role, r.Layer, r.Shape,
			r.SourceDType, r.RequestedType, r.OutputType, r.BitsPerWeight, r.Bytes, r.RMSE, r.RelError, r.Shard)
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d tensors, %d weights, %s quantized (%d bytes) from %s: %.3f bits per weight, %.2fx smaller\n",
		len(m.Rows), tot.Weights, progress.FormatBytes(tot.Bytes), tot.Bytes, progress.FormatBytes(tot.SourceBytes), tot.BitsPerWeight, tot.Ratio)
	return nil
}
