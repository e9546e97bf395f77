package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	"github.com/ohms-project/adaptq/internal/llamacpp"
)

// crossRow is one file scored by both evaluators on the same windows:
// llama-perplexity's protocol (ctx tokens per chunk, the second half
// scored), our forward pass (`adaptq verify --protocol llama.cpp`) beside
// llama.cpp's own (node-llama-cpp), each tokenizing the text itself.
type crossRow struct {
	Model, Label         string
	Windows, Tokens      int
	OursPPL, LlamaPPL    float64
	OursSecs, LlamaSecs  float64
	OursTokens, LlamaTok int // token counts of the whole text, each side's tokenizer
}

// crossChecked are the variants whose files both evaluators score.
func crossChecked(v variant) bool {
	if v.Optimized || v.Rotate || v.IMatrix || v.Budget != "" {
		return false
	}
	return v.Recipe == "q8_0" || v.Recipe == "q4_k_m" || v.Recipe == "q2_k"
}

// crossCheck scores file with both evaluators on the first windows of the
// evaluation text, cached by the file's checksum.
func (b *bench) crossCheck(ctx context.Context, w *modelWork, label, file, sha string) (crossRow, error) {
	const windows = 4
	key := "cross|" + w.spec.Name + "|" + label + fmt.Sprintf("|ctx%d|w%d", b.ctx, windows)
	if r, ok := b.cross[key]; ok && r.SHA256 == sha {
		return r.Row, nil
	}
	row := crossRow{Model: w.spec.Name, Label: label, Windows: windows}
	start := time.Now()
	raw, err := b.output(ctx, b.adaptq, "verify", "--model", file, "--text", b.evalText, "--ctx", fmt.Sprint(b.ctx),
		"--protocol", "llama.cpp", "--limit", fmt.Sprint(windows), "--json")
	if err != nil {
		return row, err
	}
	row.OursSecs = time.Since(start).Seconds()
	var vj struct {
		Tokens      int64   `json:"tokens"`
		PPL         float64 `json:"ppl"`
		InputTokens int     `json:"input_tokens"`
	}
	if err := json.Unmarshal(raw, &vj); err != nil {
		return row, fmt.Errorf("verify of %s: %w", file, err)
	}
	row.OursPPL, row.Tokens, row.OursTokens = vj.PPL, int(vj.Tokens), vj.InputTokens

	o, err := llamacpp.Find()
	if err != nil {
		return row, err
	}
	text, err := os.ReadFile(b.evalText)
	if err != nil {
		return row, err
	}
	tok, err := o.Run(ctx, &llamacpp.Request{Model: file, Tokenize: []string{string(text)}})
	if err != nil {
		return row, err
	}
	if len(tok.Tokenize) != 1 {
		return row, fmt.Errorf("llama.cpp oracle: tokenize answered %d texts", len(tok.Tokenize))
	}
	ids := tok.Tokenize[0]
	row.LlamaTok = len(ids)
	var wins [][]int
	from := b.ctx / 2
	if tok.Model.AddBOS && tok.Model.BOS != nil {
		wins, from = llamacpp.PerplexityWindows(ids, b.ctx, *tok.Model.BOS)
	} else {
		for s := 0; s+b.ctx <= len(ids); s += b.ctx {
			wins = append(wins, ids[s:s+b.ctx])
		}
	}
	if len(wins) < windows {
		return row, fmt.Errorf("%s: %d windows of %d tokens, want %d", b.evalText, len(wins), b.ctx, windows)
	}
	start = time.Now()
	sc, err := o.Run(ctx, &llamacpp.Request{Model: file, ContextSize: b.ctx, Threads: 2,
		Score: &llamacpp.Score{Windows: wins[:windows], From: from}})
	if err != nil {
		return row, err
	}
	row.LlamaSecs = time.Since(start).Seconds()
	if row.LlamaPPL, err = llamacpp.Perplexity(sc.Score); err != nil {
		return row, fmt.Errorf("llama.cpp's perplexity of %s: %w", file, err)
	}
	b.cross[key] = crossEntry{SHA256: sha, Row: row}
	return row, b.saveCache()
}

// crossEntry is a cached cross-check.
type crossEntry struct {
	SHA256 string   `json:"sha256"`
	Row    crossRow `json:"row"`
}

// crossTable renders the cross-checks of one model.
func crossTable(rows []crossRow) string {
	if len(rows) == 0 {
		return ""
	}
	var sb strings.Builder
	sb.WriteString("Two evaluators on the same files (llama-perplexity's protocol: chunks of the context length, second half scored; ")
	fmt.Fprintf(&sb, "first %d chunks of the evaluation text, each side tokenizing it itself):\n\n", rows[0].Windows)
	sb.WriteString("| file | tokens (ours / llama.cpp's) | PPL, adaptq verify | PPL, llama.cpp | difference |\n")
	sb.WriteString("| --- | ---: | ---: | ---: | ---: |\n")
	worst := 0.0
	for _, r := range rows {
		d := r.OursPPL/r.LlamaPPL - 1
		worst = math.Max(worst, math.Abs(d))
		fmt.Fprintf(&sb, "| %s | %d / %d | %.4f | %.4f | %+.3f %% |\n", r.Label, r.OursTokens, r.LlamaTok, r.OursPPL, r.LlamaPPL, 100*d)
	}
	fmt.Fprintf(&sb, "\nLargest difference: %.3f %% of PPL.\n\n", 100*worst)
	return sb.String()
}
