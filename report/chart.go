package report

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"slices"
	"strings"
	"time"
)

// bar is one bar of a chart: its label, value and tooltip.
type bar struct {
	Label string
	Value float64
	Text  string
}

// chart is an inline SVG and the bars it was drawn from.
type chart struct {
	ID   string
	SVG  template.HTML
	Bars []bar
}

const (
	chartW, chartH = 1000.0, 260.0
	padL, padB     = 70.0, 70.0
	padT, padR     = 16.0, 10.0
)

// barChart draws bars left to right, scaled to the largest value, with a
// y axis of four ticks; every rect carries its exact value in data-value
// and a <title> tooltip. Labels are drawn under the bars when they fit.
func barChart(id, title string, bars []bar, tick string) *chart {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg id="%s" class="chart" viewBox="0 0 %g %g" width="100%%" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg">`, id, chartW, chartH, html.EscapeString(title))
	max := 0.0
	for _, x := range bars {
		max = math.Max(max, x.Value)
	}
	if max == 0 {
		max = 1
	}
	plotW, plotH := chartW-padL-padR, chartH-padT-padB
	for i := 0; i <= 4; i++ {
		v := max * float64(i) / 4
		y := padT + plotH - plotH*float64(i)/4
		fmt.Fprintf(&b, `<line x1="%g" x2="%g" y1="%.2f" y2="%.2f" class="grid"/><text x="%g" y="%.2f" class="tick" text-anchor="end">%s</text>`, padL, chartW-padR, y, y, padL-6, y+4, fmt.Sprintf(tick, v))
	}
	n := float64(max1(len(bars)))
	w := plotW / n
	labels := w >= 9
	for i, x := range bars {
		h := plotH * x.Value / max
		bx := padL + w*float64(i)
		fmt.Fprintf(&b, `<rect class="bar" x="%.2f" y="%.2f" width="%.2f" height="%.2f" data-label="%s" data-value="%v"><title>%s</title></rect>`,
			bx+w*0.1, padT+plotH-h, w*0.8, h, html.EscapeString(x.Label), x.Value, html.EscapeString(x.Text))
		if labels {
			lx, ly := bx+w/2, padT+plotH+8
			fmt.Fprintf(&b, `<text class="label" x="%.2f" y="%.2f" transform="rotate(60 %.2f %.2f)">%s</text>`, lx, ly, lx, ly, html.EscapeString(short(x.Label, 18)))
		}
	}
	fmt.Fprintf(&b, `<line x1="%g" x2="%g" y1="%g" y2="%g" class="axis"/></svg>`, padL, chartW-padR, padT+plotH, padT+plotH)
	return &chart{ID: id, SVG: template.HTML(b.String()), Bars: bars}
}

func max1(n int) int {
	if n < 1 {
		return 1
	}
	return n
}

func short(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n+1:]
}

// histogram bins per-token KL divergences: bins equal-width bins from 0 to
// the 99th percentile, then one bin for everything above it.
func histogram(kl []float64, bins int) *chart {
	s := slices.Clone(kl)
	slices.Sort(s)
	hi := s[int(math.Floor(0.99*float64(len(s)-1)))]
	if hi <= 0 {
		hi = s[len(s)-1]
	}
	if hi <= 0 {
		hi = 1
	}
	counts := make([]int, bins+1)
	for _, x := range s {
		i := int(x / hi * float64(bins))
		if x > hi {
			i = bins
		} else if i >= bins {
			i = bins - 1
		}
		if i < 0 {
			i = 0
		}
		counts[i]++
	}
	bs := make([]bar, len(counts))
	for i, c := range counts {
		lo, up := hi*float64(i)/float64(bins), hi*float64(i+1)/float64(bins)
		label := fmt.Sprintf("%.3g", lo)
		text := fmt.Sprintf("KL in [%.4g, %.4g): %d tokens", lo, up, c)
		if i == bins {
			label, text = fmt.Sprintf(">%.3g", hi), fmt.Sprintf("KL > %.4g (above p99): %d tokens", hi, c)
		}
		bs[i] = bar{Label: label, Value: float64(c), Text: text}
	}
	return barChart("kl-hist", "tokens per KL-divergence bin", bs, "%.0f")
}

// shardTime is one shard's entry of the manifest's "shard_times".
type shardTime struct {
	Shard   string    `json:"shard"`
	Started time.Time `json:"started"`
	Seconds float64   `json:"seconds"`
	Worker  string    `json:"worker,omitempty"`
	Reused  bool      `json:"reused,omitempty"`
}

// timeline draws one row per shard: a bar from its activity's start to
// its end, in seconds since the first shard started, coloured by worker.
// Every rect carries its start offset and duration (data-start,
// data-value).
func timeline(ts []shardTime) *chart {
	t0 := ts[0].Started
	end := 0.0
	for _, t := range ts {
		if t.Started.Before(t0) {
			t0 = t.Started
		}
	}
	workers := map[string]int{}
	var order []string
	for _, t := range ts {
		end = math.Max(end, t.Started.Sub(t0).Seconds()+t.Seconds)
		if _, ok := workers[t.Worker]; !ok {
			workers[t.Worker] = len(workers)
			order = append(order, t.Worker)
		}
	}
	if end <= 0 {
		end = 1
	}
	colours := []string{"#3b6fb6", "#e07b00", "#2e9d5b", "#b03a7a", "#7a5cc0", "#8c6d1f"}
	row := 16.0
	h := padT + row*float64(len(ts)) + 40 + 18*float64(len(order))
	plotW := chartW - 110 - padR
	var b strings.Builder
	fmt.Fprintf(&b, `<svg id="timeline" class="chart" viewBox="0 0 %g %g" width="100%%" role="img" aria-label="shard timeline" xmlns="http://www.w3.org/2000/svg">`, chartW, h)
	base := padT + row*float64(len(ts))
	for i := 0; i <= 4; i++ {
		x := 110 + plotW*float64(i)/4
		fmt.Fprintf(&b, `<line x1="%.2f" x2="%.2f" y1="%g" y2="%g" class="grid"/><text x="%.2f" y="%g" class="tick" text-anchor="middle">%.3gs</text>`, x, x, padT, base, x, base+14, end*float64(i)/4)
	}
	bars := make([]bar, len(ts))
	for i, t := range ts {
		off := t.Started.Sub(t0).Seconds()
		y := padT + row*float64(i)
		text := fmt.Sprintf("%s: %.3fs from %.3fs on %s", t.Shard, t.Seconds, off, t.Worker)
		if t.Reused {
			text += " (reused)"
		}
		fmt.Fprintf(&b, `<text class="tick" x="104" y="%.2f" text-anchor="end">%s</text>`, y+row*0.7, html.EscapeString(t.Shard))
		fmt.Fprintf(&b, `<rect class="span" x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="%s" data-label="%s" data-start="%v" data-value="%v"><title>%s</title></rect>`,
			110+plotW*off/end, y+2, math.Max(plotW*t.Seconds/end, 1), row-4, colours[workers[t.Worker]%len(colours)], html.EscapeString(t.Shard), off, t.Seconds, html.EscapeString(text))
		bars[i] = bar{Label: t.Shard, Value: t.Seconds, Text: text}
	}
	for i, w := range order {
		y := base + 30 + 18*float64(i)
		name := w
		if name == "" {
			name = "(unknown worker)"
		}
		fmt.Fprintf(&b, `<rect x="110" y="%g" width="12" height="12" fill="%s"/><text class="tick" x="128" y="%g">%s</text>`, y, colours[i%len(colours)], y+10, html.EscapeString(name))
	}
	b.WriteString(`</svg>`)
	return &chart{ID: "timeline", SVG: template.HTML(b.String()), Bars: bars}
}
