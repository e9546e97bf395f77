package report_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/net/html"

	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/infer"
	"github.com/ohms-project/adaptq/internal/browser"
	"github.com/ohms-project/adaptq/manifest"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/report"
	"github.com/ohms-project/adaptq/shards"
	"github.com/ohms-project/adaptq/store"
)

// output exports the stories260k fixture with q4_k into a new local
// store (export.Stitch writes report.html too).
func output(t testing.TB) (store.Store, string) {
	t.Helper()
	ctx := context.Background()
	src, err := store.NewLocal("../testdata/models/stories260k")
	if err != nil {
		t.Fatal(err)
	}
	ck, err := model.Open(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	r, err := shards.NamedRecipe("q4_k")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out, err := store.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := export.Run(ctx, ck, out, r, export.Events{}); err != nil {
		t.Fatal(err)
	}
	return out, dir
}

// parse returns the page's elements by id and every element with a
// data-value attribute, in document order.
func parse(t *testing.T, page []byte) (byID map[string]string, values []*html.Node) {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	byID = map[string]string{}
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			for _, a := range n.Attr {
				if a.Key == "id" {
					byID[a.Val] = strings.TrimSpace(text(n))
				}
				if a.Key == "data-value" {
					values = append(values, n)
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return byID, values
}

func text(n *html.Node) string {
	if n.Type == html.TextNode {
		return n.Data
	}
	var b strings.Builder
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		b.WriteString(text(c))
	}
	return b.String()
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func readManifest(t *testing.T, out store.Store) *manifest.Manifest {
	t.Helper()
	b, err := store.ReadAll(context.Background(), out, report.ManifestKey)
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Read(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestPageHoldsManifest checks that the page the stitch wrote shows the
// manifest's totals, every tensor's rel_error (table and chart) and the
// shards' bytes, and says that there is no evaluation, budget or timing.
func TestPageHoldsManifest(t *testing.T) {
	ctx := context.Background()
	out, _ := output(t)
	page, err := store.ReadAll(ctx, out, report.Key)
	if err != nil {
		t.Fatalf("the stitch wrote no %s: %v", report.Key, err)
	}
	m := readManifest(t, out)
	tot := m.Totals()
	ids, values := parse(t, page)
	for id, want := range map[string]string{
		"total-weights":      fmt.Sprint(tot.Weights),
		"total-bytes":        fmt.Sprint(tot.Bytes),
		"total-source-bytes": fmt.Sprint(tot.SourceBytes),
		"total-bpw":          fmt.Sprintf("%.4f", tot.BitsPerWeight),
		"total-tensors":      fmt.Sprint(len(m.Rows)),
		"recipe":             "q4_k",
	} {
		if ids[id] != want {
			t.Errorf("#%s = %q, manifest says %q", id, ids[id], want)
		}
	}
	if tot.Bytes == 0 || tot.Weights == 0 {
		t.Fatalf("empty manifest totals %+v", tot)
	}
	for _, id := range []string{"eval-none", "budget-none", "timing-none"} {
		if _, ok := ids[id]; !ok {
			t.Errorf("no #%s note", id)
		}
	}
	// Table cells and chart bars carry exact values.
	var cells, relBars []float64
	shardBytes := map[string]float64{}
	for _, n := range values {
		v, err := strconv.ParseFloat(attr(n, "data-value"), 64)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case n.Data == "td":
			cells = append(cells, v)
		case n.Data == "rect" && n.Parent != nil && attr(n.Parent, "id") == "rel-error":
			relBars = append(relBars, v)
		case n.Data == "rect" && n.Parent != nil && attr(n.Parent, "id") == "shard-bytes":
			shardBytes[attr(n, "data-label")] = v
		}
	}
	if len(cells) != len(m.Rows) || len(relBars) != len(m.Rows) {
		t.Fatalf("%d rel_error cells and %d bars for %d tensors", len(cells), len(relBars), len(m.Rows))
	}
	want := map[string]float64{}
	for i, r := range m.Rows {
		if cells[i] != r.RelError || relBars[i] != r.RelError {
			t.Errorf("tensor %s: page shows rel_error %v (table) %v (chart), manifest %v", r.GGUFName, cells[i], relBars[i], r.RelError)
		}
		want[r.Shard] += float64(r.Bytes)
	}
	if len(shardBytes) != len(want) {
		t.Errorf("%d shard bars, manifest has %d shards", len(shardBytes), len(want))
	}
	for s, b := range want {
		if shardBytes[s] != b {
			t.Errorf("shard %s: bar %v bytes, manifest %v", s, shardBytes[s], b)
		}
	}
}

// TestPageEvalAndBudget adds an evaluation (result and the per-token sums
// it came from, plus a stale group of sums that must not be used) and a
// budget to an output and checks the page shows them and the histogram
// counts every token.
func TestPageEvalAndBudget(t *testing.T) {
	ctx := context.Background()
	out, _ := output(t)
	res, m := addEvalAndBudget(t, out)
	if _, err := report.Write(ctx, out); err != nil {
		t.Fatal(err)
	}
	page, err := store.ReadAll(ctx, out, report.Key)
	if err != nil {
		t.Fatal(err)
	}
	ids, values := parse(t, page)
	for id, want := range map[string]string{
		"eval-tokens":  fmt.Sprint(res.Tokens),
		"eval-ppl":     g6(res.PPL),
		"eval-kl-mean": g6(res.KLMean),
		"eval-kl-p99":  g6(res.KLP99),
		"eval-top1":    fmt.Sprintf("%.2f%%", 100*res.Top1),
	} {
		if ids[id] != want {
			t.Errorf("#%s = %q, result says %q", id, ids[id], want)
		}
	}
	if !strings.Contains(ids["budget"], m.Rows[1].GGUFName) || !strings.Contains(ids["budget"], "q5_k") {
		t.Errorf("budget table %q lacks the chosen type", ids["budget"])
	}
	if !strings.Contains(ids["budget-goal"], "4.500 bits per weight") {
		t.Errorf("budget goal %q", ids["budget-goal"])
	}
	var total, last float64
	for _, n := range values {
		if n.Data == "rect" && attr(n.Parent, "id") == "kl-hist" {
			v, _ := strconv.ParseFloat(attr(n, "data-value"), 64)
			total += v
			last = v
		}
	}
	if total != float64(res.Tokens) {
		t.Errorf("histogram counts %v tokens, the evaluation scored %d", total, res.Tokens)
	}
	if last != 1 {
		t.Errorf("overflow bin holds %v tokens, want the 1 outlier", last)
	}
	if _, ok := ids["kl-hist-none"]; ok {
		t.Error("page says no per-token KLDs although they are stored")
	}
}

// addEvalAndBudget stores an evaluation (eval/result.json and the sums it
// was merged from, per-token KLDs included, plus another evaluation's
// sums) and a budget.json naming the manifest's second tensor in out.
func addEvalAndBudget(t *testing.T, out store.Store) (infer.Result, *manifest.Manifest) {
	t.Helper()
	ctx := context.Background()
	put := func(key string, v any) {
		b, _ := json.Marshal(v)
		if _, err := out.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	var parts []*infer.Sums
	for i := range 3 {
		w := infer.WindowSums{Index: i}
		for j := range 40 {
			kl := float64((i*40+j)%17) * 0.01
			if i == 0 && j == 7 {
				kl = 2.5 // the one token above p99
			}
			w.TokenKL = append(w.TokenKL, kl)
			w.KL += kl
			w.NLL += 1 + kl
			w.RefNLL++
			w.Tokens++
			if kl < 0.1 {
				w.Top1++
			}
		}
		s := &infer.Sums{Reference: true, Windows: []infer.WindowSums{w}}
		parts = append(parts, s)
		put(fmt.Sprintf("eval/sums-%016x-%06d-%06d.json", 0xabc, i, 1), s)
	}
	// Another evaluation's sums: same windows, other numbers.
	put(fmt.Sprintf("eval/sums-%016x-%06d-%06d.json", 0x123, 0, 1), &infer.Sums{Reference: true, Windows: []infer.WindowSums{{Index: 0, Tokens: 1, NLL: 1, RefNLL: 1, KL: 9, TokenKL: []float64{9}}}})
	merged, err := infer.Merge(parts...)
	if err != nil {
		t.Fatal(err)
	}
	res := merged.Result()
	put(report.EvalKey, res)
	m := readManifest(t, out)
	plan := map[string]any{"plan": map[string]any{
		"goal": map[string]any{"target_bpw": 4.5}, "bytes": 1234, "bits_per_weight": 4.5,
		"tensors": []map[string]any{{"name": m.Rows[1].GGUFName, "type": "q5_k", "bytes": 99}},
	}}
	put(report.BudgetKey, plan)
	return res, m
}

// addShardTimes rewrites out's manifest with shard times as a Temporal
// run's stitch records them (export.ShardTimesKey): shard i starts at
// 0.5·i seconds and runs 1+0.25·i seconds, on one of two workers.
func addShardTimes(t *testing.T, out store.Store) []export.ShardTime {
	t.Helper()
	ctx := context.Background()
	m := readManifest(t, out)
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	var ts []export.ShardTime
	seen := map[string]bool{}
	for _, r := range m.Rows {
		if seen[r.Shard] {
			continue
		}
		seen[r.Shard] = true
		i := len(ts)
		ts = append(ts, export.ShardTime{Shard: r.Shard, Started: t0.Add(time.Duration(i) * 500 * time.Millisecond),
			Seconds: 1 + 0.25*float64(i), Worker: fmt.Sprintf("%d@host", 100+i%2), Reused: i == 0})
	}
	b, _ := json.Marshal(ts)
	m.Meta[export.ShardTimesKey] = string(b)
	mb, err := manifest.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := out.Put(ctx, report.ManifestKey, bytes.NewReader(mb), int64(len(mb))); err != nil {
		t.Fatal(err)
	}
	return ts
}

// TestPageTimeline checks the timeline's bars against the manifest's
// shard times: one per shard, its start offset and duration exact.
func TestPageTimeline(t *testing.T) {
	if export.ShardTimesKey != report.ShardTimesKey {
		t.Fatalf("export writes %q, report reads %q", export.ShardTimesKey, report.ShardTimesKey)
	}
	out, _ := output(t)
	ts := addShardTimes(t, out)
	if _, err := report.Write(context.Background(), out); err != nil {
		t.Fatal(err)
	}
	page, err := store.ReadAll(context.Background(), out, report.Key)
	if err != nil {
		t.Fatal(err)
	}
	ids, values := parse(t, page)
	if _, ok := ids["timing-none"]; ok {
		t.Error("the page says there are no times")
	}
	var spans []*html.Node
	for _, n := range values {
		if n.Data == "rect" && attr(n.Parent, "id") == "timeline" {
			spans = append(spans, n)
		}
	}
	if len(spans) != len(ts) {
		t.Fatalf("%d timeline bars for %d shards", len(spans), len(ts))
	}
	for i, n := range spans {
		start, _ := strconv.ParseFloat(attr(n, "data-start"), 64)
		secs, _ := strconv.ParseFloat(attr(n, "data-value"), 64)
		if attr(n, "data-label") != ts[i].Shard || secs != ts[i].Seconds || start != 0.5*float64(i) {
			t.Errorf("bar %d: %s from %vs for %vs, want %s from %vs for %vs", i, attr(n, "data-label"), start, secs, ts[i].Shard, 0.5*float64(i), ts[i].Seconds)
		}
	}
	if !strings.Contains(ids["times"], "101@host") {
		t.Errorf("the times table does not name the workers: %q", ids["times"])
	}
}

// TestPageInChromium opens report.html in headless Chromium from the file
// system, checks that it renders its charts and shows the manifest's
// total bytes, and keeps a screenshot under artifacts/TestPageInChromium/.
func TestPageInChromium(t *testing.T) {
	out, dir := output(t)
	addEvalAndBudget(t, out)
	addShardTimes(t, out)
	if _, err := report.Write(context.Background(), out); err != nil {
		t.Fatal(err)
	}
	m := readManifest(t, out)
	bctx := browser.New(t, 2*time.Minute)
	page := "file://" + filepath.Join(dir, report.Key)
	if err := chromedp.Do(bctx, chromedp.Navigate(page)); err != nil {
		t.Fatalf("open %s: %v", page, err)
	}
	eval := func(js string) string {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return v
	}
	title := eval(`document.title`)
	bytesText := eval(`document.querySelector("#total-bytes")?.innerText ?? ""`)
	svgs, _ := strconv.Atoi(eval(`String(document.querySelectorAll("svg.chart").length)`))
	rects, _ := strconv.Atoi(eval(`String(document.querySelectorAll("svg.chart rect.bar").length)`))
	// The charts are drawn: the first bar has a rendered size.
	width := eval(`String(document.querySelector("#rel-error rect.bar").getBoundingClientRect().width)`)
	if w, err := strconv.ParseFloat(width, 64); err != nil || w <= 0 {
		t.Errorf("the first rel_error bar is %q px wide", width)
	}
	if !strings.HasPrefix(title, "adaptq report") {
		t.Errorf("title %q", title)
	}
	if want := fmt.Sprint(m.Totals().Bytes); bytesText != want {
		t.Errorf("total bytes shown %q, manifest %s", bytesText, want)
	}
	if svgs != 5 || rects < len(m.Rows) {
		t.Errorf("%d charts with %d bars, want 5 charts (shard bytes and bits, rel_error, KL histogram, timeline) and at least %d bars", svgs, rects, len(m.Rows))
	}
	path := browser.Screenshot(t, bctx, "report.png")
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Errorf("screenshot %s: %v", path, err)
	}
}

// BenchmarkRender renders the fixture's page.
func BenchmarkRender(b *testing.B) {
	out, _ := output(b)
	d, err := report.Load(context.Background(), out)
	if err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	for b.Loop() {
		buf.Reset()
		if err := report.Render(&buf, d); err != nil {
			b.Fatal(err)
		}
	}
}

// g6 is the page's six-digit number format.
func g6(v float64) string {
	if v == 0 {
		return "0"
	}
	return fmt.Sprintf("%.6g", v)
}
