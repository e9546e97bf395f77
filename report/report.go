// Package report renders one self-contained HTML page (report.html) about a
// finished output: its manifest's totals, size and bits per weight per shard
// and per tensor type, the error of every tensor, the budget's chosen types
// when the run was budgeted and the evaluation when there is one. The charts
// are inline SVG generated here; the page loads nothing (no script, no
// network).
package report

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"math"
	"regexp"
	"sort"
	"strings"

	"github.com/ohms-project/adaptq/budget"
	"github.com/ohms-project/adaptq/infer"
	"github.com/ohms-project/adaptq/manifest"
	"github.com/ohms-project/adaptq/store"
)

// Key is where Write puts the page in an output, beside model.gguf.
const Key = "report.html"

// The objects of an output the page is made from.
const (
	ManifestKey = "manifest.parquet"
	EvalKey     = "eval/result.json"
	SumsPrefix  = "eval/sums-"
	BudgetKey   = "budget.json"
)

// Data is what a page shows: the manifest always; the rest when the output
// holds it.
type Data struct {
	Location string
	Manifest *manifest.Manifest
	// Eval is eval/result.json; TokenKL the per-token KL divergences of the
	// stored sums that give exactly that result (nil when none do).
	Eval    *infer.Result
	TokenKL []float64
	// Budget is the plan of budget.json.
	Budget *budget.Plan
}

// Load reads an output's manifest.parquet and, when present,
// eval/result.json, the eval/sums-*.json it was aggregated from and
// budget.json.
func Load(ctx context.Context, out store.Store) (*Data, error) {
	d := &Data{Location: out.Location()}
	b, err := store.ReadAll(ctx, out, ManifestKey)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	if d.Manifest, err = manifest.Read(ctx, b); err != nil {
		return nil, fmt.Errorf("report: %s: %w", store.Describe(out, ManifestKey), err)
	}
	if b, err = readOptional(ctx, out, EvalKey); err != nil {
		return nil, err
	} else if b != nil {
		var r infer.Result
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("report: %s: %w", store.Describe(out, EvalKey), err)
		}
		d.Eval = &r
		if d.TokenKL, err = tokenKL(ctx, out, &r); err != nil {
			return nil, err
		}
	}
	if b, err = readOptional(ctx, out, BudgetKey); err != nil {
		return nil, err
	} else if b != nil {
		var o struct {
			Plan *budget.Plan `json:"plan"`
		}
		if err := json.Unmarshal(b, &o); err != nil {
			return nil, fmt.Errorf("report: %s: %w", store.Describe(out, BudgetKey), err)
		}
		d.Budget = o.Plan
	}
	return d, nil
}

func readOptional(ctx context.Context, out store.Store, key string) ([]byte, error) {
	b, err := store.ReadAll(ctx, out, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	return b, nil
}

var sumsKey = regexp.MustCompile(`^eval/sums-([0-9a-f]+)-\d+-\d+\.json$`)

// tokenKL finds the stored sums (grouped by the hash in their keys) whose
// merge gives exactly res and returns their per-token KL divergences in
// window order; nil when no group does or the sums hold none.
func tokenKL(ctx context.Context, out store.Store, res *infer.Result) ([]float64, error) {
	if !res.Reference {
		return nil, nil
	}
	objs, err := out.List(ctx, SumsPrefix)
	if err != nil {
		return nil, fmt.Errorf("report: list %s: %w", store.Describe(out, SumsPrefix), err)
	}
	groups := map[string][]string{}
	var order []string
	for _, o := range objs {
		m := sumsKey.FindStringSubmatch(o.Key)
		if m == nil {
			continue
		}
		if _, ok := groups[m[1]]; !ok {
			order = append(order, m[1])
		}
		groups[m[1]] = append(groups[m[1]], o.Key)
	}
	for _, h := range order {
		var parts []*infer.Sums
		for _, k := range groups[h] {
			b, err := store.ReadAll(ctx, out, k)
			if err != nil {
				return nil, fmt.Errorf("report: %w", err)
			}
			var s infer.Sums
			if err := json.Unmarshal(b, &s); err != nil {
				return nil, fmt.Errorf("report: %s: %w", store.Describe(out, k), err)
			}
			parts = append(parts, &s)
		}
		merged, err := infer.Merge(parts...)
		if err != nil {
			continue // not one evaluation's chunks
		}
		if r := merged.Result(); r != *res {
			continue
		}
		var kl []float64
		for _, w := range merged.Windows {
			kl = append(kl, w.TokenKL...)
		}
		if int64(len(kl)) != res.Tokens {
			return nil, nil
		}
		return kl, nil
	}
	return nil, nil
}

// Write loads the output, renders the page and stores it as report.html;
// it returns the page's key.
func Write(ctx context.Context, out store.Store) (string, error) {
	d, err := Load(ctx, out)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := Render(&buf, d); err != nil {
		return "", err
	}
	if _, err := out.Put(ctx, Key, bytes.NewReader(buf.Bytes()), int64(buf.Len())); err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	return Key, nil
}

//go:embed report.html.tmpl
var pageText string

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"g":   func(v float64) string { return fmtFloat(v, 4) },
	"g6":  func(v float64) string { return fmtFloat(v, 6) },
	"raw": func(v float64) string { return fmt.Sprint(v) },
	"pct": func(v float64) string { return fmt.Sprintf("%.2f%%", 100*v) },
}).Parse(pageText))

func fmtFloat(v float64, digits int) string {
	if v == 0 {
		return "0"
	}
	return fmt.Sprintf("%.*g", digits, v)
}

// Render writes the page of d.
func Render(w io.Writer, d *Data) error {
	if d.Manifest == nil {
		return errors.New("report: no manifest")
	}
	v := build(d)
	if err := page.Execute(w, v); err != nil {
		return fmt.Errorf("report: render %s: %w", d.Location, err)
	}
	return nil
}

// view is what the template reads.
type view struct {
	Location                             string
	Model                                string
	Recipe                               string
	SHA256                               string
	Totals                               manifest.Totals
	Tensors                              int
	Shards                               []group
	Types                                []group
	Rows                                 []tensorRow
	ShardBytes, ShardBPW, RelErr, KLHist *chart
	Timeline                             *chart
	Times                                []shardTime
	TimesErr                             string
	Eval                                 *infer.Result
	TokenKL                              int
	Budget                               *budget.Plan
}

type group struct {
	Name                      string
	Tensors                   int
	Weights, Bytes            int64
	BitsPerWeight, MeanRelErr float64
	MaxRelErr                 float64
}

type tensorRow struct {
	manifest.Row
	Weights int64
	Shape   string
}

func build(d *Data) *view {
	m := d.Manifest
	v := &view{Location: d.Location, Model: m.Meta["model"], SHA256: m.Meta["gguf_sha256"], Totals: m.Totals(), Tensors: len(m.Rows), Eval: d.Eval, TokenKL: len(d.TokenKL), Budget: d.Budget}
	var rec struct {
		Name string `json:"name"`
	}
	if json.Unmarshal([]byte(m.Meta["recipe"]), &rec) == nil && rec.Name != "" {
		v.Recipe = rec.Name
	} else {
		v.Recipe = m.Meta["recipe"]
	}
	shardIdx, typeIdx := map[string]int{}, map[string]int{}
	add := func(gs *[]group, idx map[string]int, name string, r manifest.Row, n int64) {
		i, ok := idx[name]
		if !ok {
			i = len(*gs)
			idx[name] = i
			*gs = append(*gs, group{Name: name})
		}
		g := &(*gs)[i]
		g.Tensors++
		g.Weights += n
		g.Bytes += r.Bytes
		g.MeanRelErr += r.RelError
		g.MaxRelErr = math.Max(g.MaxRelErr, r.RelError)
	}
	for _, r := range m.Rows {
		n := int64(1)
		dims := make([]string, len(r.Shape))
		for i, s := range r.Shape {
			n *= s
			dims[i] = fmt.Sprint(s)
		}
		v.Rows = append(v.Rows, tensorRow{Row: r, Weights: n, Shape: strings.Join(dims, "×")})
		add(&v.Shards, shardIdx, r.Shard, r, n)
		add(&v.Types, typeIdx, r.OutputType, r, n)
	}
	for _, gs := range [][]group{v.Shards, v.Types} {
		for i := range gs {
			g := &gs[i]
			if g.Weights > 0 {
				g.BitsPerWeight = float64(g.Bytes) * 8 / float64(g.Weights)
			}
			g.MeanRelErr /= float64(g.Tensors)
		}
	}
	sort.Slice(v.Types, func(i, j int) bool { return v.Types[i].Bytes > v.Types[j].Bytes })
	var sb, sp, re []bar
	for _, g := range v.Shards {
		sb = append(sb, bar{Label: g.Name, Value: float64(g.Bytes), Text: fmt.Sprintf("%s: %d bytes", g.Name, g.Bytes)})
		sp = append(sp, bar{Label: g.Name, Value: g.BitsPerWeight, Text: fmt.Sprintf("%s: %.4f bits/weight", g.Name, g.BitsPerWeight)})
	}
	for _, r := range m.Rows {
		re = append(re, bar{Label: r.GGUFName, Value: r.RelError, Text: fmt.Sprintf("%s (%s): rel_error %.6g", r.GGUFName, r.OutputType, r.RelError)})
	}
	v.ShardBytes = barChart("shard-bytes", "bytes per shard", sb, "%.0f")
	v.ShardBPW = barChart("shard-bpw", "bits per weight per shard", sp, "%.3g")
	v.RelErr = barChart("rel-error", "relative error ‖W−Ŵ‖/‖W‖ per tensor", re, "%.3g")
	if len(d.TokenKL) > 0 {
		v.KLHist = histogram(d.TokenKL, 30)
	}
	if ts, err := shardTimes(m); err != nil {
		v.TimesErr = err.Error()
	} else if len(ts) > 0 {
		v.Timeline = timeline(ts)
		v.Times = ts
	}
	return v
}

// ShardTimesKey is the manifest metadata key a Temporal run's stitch
// records the shards' activity times under (export.ShardTimesKey).
const ShardTimesKey = "shard_times"

func shardTimes(m *manifest.Manifest) ([]shardTime, error) {
	s, ok := m.Meta[ShardTimesKey]
	if !ok {
		return nil, nil
	}
	var ts []shardTime
	if err := json.Unmarshal([]byte(s), &ts); err != nil {
		return nil, fmt.Errorf("the manifest's %s metadata is not a JSON list of shard times: %v", ShardTimesKey, err)
	}
	return ts, nil
}
