// Package llamacpp runs real llama.cpp as a test oracle: the Node.js script
// testdata/llamacpp/oracle.mjs loads a GGUF file through node-llama-cpp's
// prebuilt CPU binaries and answers a JSON request (greedy generation,
// next-token log-probabilities of token windows, tokenization). This
// package finds node and node-llama-cpp, runs the script and decodes its
// reply, and computes llama-perplexity's protocol from the log-probs.
package llamacpp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ohms-project/adaptq/internal/testenv"
)

// Oracle is a runnable oracle: the node binary, the script and the
// node_modules directory holding node-llama-cpp.
type Oracle struct {
	Node        string
	Script      string
	NodeModules string
}

// Find locates node (on PATH), the script (<repo>/testdata/llamacpp/
// oracle.mjs) and node-llama-cpp ($ADAPTQ_NODE_MODULES, else
// <repo>/.tools/npm/node_modules, installed by `bash scripts/tools.sh
// llama`). The error says what is missing.
func Find() (*Oracle, error) {
	root, err := testenv.RepoRoot()
	if err != nil {
		return nil, fmt.Errorf("llama.cpp oracle: %w", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("llama.cpp oracle: node not found on PATH: %w", err)
	}
	modules := os.Getenv("ADAPTQ_NODE_MODULES")
	if modules == "" {
		modules = filepath.Join(root, ".tools", "npm", "node_modules")
	}
	pkg := filepath.Join(modules, "node-llama-cpp", "dist", "index.js")
	if _, err := os.Stat(pkg); err != nil {
		return nil, fmt.Errorf("llama.cpp oracle: node-llama-cpp not found at %s", pkg)
	}
	script := filepath.Join(root, "testdata", "llamacpp", "oracle.mjs")
	if _, err := os.Stat(script); err != nil {
		return nil, fmt.Errorf("llama.cpp oracle: script: %w", err)
	}
	return &Oracle{Node: node, Script: script, NodeModules: modules}, nil
}

// Require returns the oracle, or fails the test in CI (CI=true) and skips
// it elsewhere when node or node-llama-cpp is missing.
func Require(tb testing.TB) *Oracle {
	tb.Helper()
	o, err := Find()
	if err != nil {
		testenv.Missing(tb, err.Error())
	}
	return o
}

// Request is one oracle request; see oracle.mjs for the meaning of each
// part. Nil parts are not computed. KVCacheType ("F32", "F16", ...) sets
// the type of llama.cpp's key/value cache (empty: llama.cpp's default,
// F16, which rounds keys and values and, for the K·Q product, the queries
// to F16); FlashAttention, when set, forces flash attention on or off
// (nil: llama.cpp's "auto").
type Request struct {
	Model          string    `json:"model"`
	ContextSize    int       `json:"contextSize,omitempty"`
	Threads        int       `json:"threads,omitempty"`
	KVCacheType    string    `json:"kvCacheType,omitempty"`
	FlashAttention *bool     `json:"flashAttention,omitempty"`
	Generate       *Generate `json:"generate,omitempty"`
	Score          *Score    `json:"score,omitempty"`
	Tokenize       []string  `json:"tokenize,omitempty"`
}

// Generate asks for greedy decoding of Tokens tokens after BOS, or after
// Prompt's ids when it is set.
type Generate struct {
	Tokens int   `json:"tokens"`
	Prompt []int `json:"prompt,omitempty"`
}

// Score asks for the log-probability of each next token of each window, at
// positions From to len(window)-2, and optionally the TopK most likely
// tokens there.
type Score struct {
	Windows [][]int `json:"windows"`
	From    int     `json:"from"`
	TopK    int     `json:"topK,omitempty"`
}

// Response is the oracle's reply.
type Response struct {
	Model struct {
		BOS    *int `json:"bos"`
		EOS    *int `json:"eos"`
		AddBOS bool `json:"addBos"`
	} `json:"model"`
	Generate *Generated    `json:"generate"`
	Score    []WindowScore `json:"score"`
	Tokenize [][]int       `json:"tokenize"`
	Error    string        `json:"error"`
}

// Generated is the result of greedy decoding.
type Generated struct {
	Tokens []int    `json:"tokens"`
	Pieces []string `json:"pieces"`
	Text   string   `json:"text"`
}

// WindowScore holds the next-token log-probs of one window. A nil entry of
// LogProbs is a probability that underflowed to 0. Ms is the wall-clock
// time llama.cpp took to evaluate the window, in milliseconds, measured
// inside node around the evaluation (0 from an oracle script that predates
// it).
type WindowScore struct {
	LogProbs []*float64     `json:"logprobs"`
	Top      [][][2]float64 `json:"top"`
	Ms       float64        `json:"ms"`
}

// Run sends req to a new oracle process and decodes its reply.
func (o *Oracle) Run(ctx context.Context, req *Request) (*Response, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("llama.cpp oracle: %w", err)
	}
	cmd := exec.CommandContext(ctx, o.Node, o.Script)
	cmd.Env = append(os.Environ(), "ADAPTQ_NODE_MODULES="+o.NodeModules)
	cmd.Stdin = bytes.NewReader(body)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var resp Response
	decErr := json.Unmarshal(stdout.Bytes(), &resp)
	switch {
	case decErr == nil && resp.Error != "":
		return nil, fmt.Errorf("llama.cpp oracle on %s: %s", req.Model, resp.Error)
	case runErr != nil:
		return nil, fmt.Errorf("llama.cpp oracle on %s: %w; stderr: %s", req.Model, runErr, tail(stderr.String()))
	case decErr != nil:
		return nil, fmt.Errorf("llama.cpp oracle on %s: reply is not JSON: %w; stderr: %s", req.Model, decErr, tail(stderr.String()))
	}
	return &resp, nil
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	return s
}

// PerplexityWindows cuts a token stream into llama-perplexity's chunks:
// llama-perplexity tokenizes its text with BOS prepended (when the model
// adds BOS), takes n = len/nCtx chunks of nCtx tokens, replaces each
// chunk's first token by BOS and scores the second half: the predictions
// made at positions nCtx/2 to nCtx-2. ids is the text's tokens without BOS;
// the returned from is the first scored position.
func PerplexityWindows(ids []int, nCtx, bos int) (windows [][]int, from int) {
	all := append([]int{bos}, ids...)
	for start := 0; start+nCtx <= len(all); start += nCtx {
		w := append([]int(nil), all[start:start+nCtx]...)
		w[0] = bos
		windows = append(windows, w)
	}
	return windows, nCtx / 2
}

// Perplexity is exp of the mean negative log-probability over all scored
// positions of all windows (accumulated in float64).
func Perplexity(scores []WindowScore) (float64, error) {
	var nll float64
	n := 0
	for i, w := range scores {
		for j, lp := range w.LogProbs {
			if lp == nil {
				return 0, fmt.Errorf("window %d position %d: probability 0", i, j)
			}
			nll -= *lp
			n++
		}
	}
	if n == 0 {
		return 0, errors.New("no scored positions")
	}
	return math.Exp(nll / float64(n)), nil
}
