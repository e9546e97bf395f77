package infer

import (
	"bufio"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"strconv"
)

// Protocol is a way of cutting a token stream into scored windows.
type Protocol string

// Perplexity protocols.
const (
	// ProtocolFull splits the ids into consecutive windows of ctx−1 tokens,
	// drops a final partial window, prepends BOS to each and scores every
	// token of the window given its prefix: positions 0..ctx−2 predict
	// tokens 1..ctx−1 of the window, so the first scored token is the
	// window's first id given BOS alone. ctx−1 scored tokens per window.
	ProtocolFull Protocol = "full"
	// ProtocolLlamaCpp is llama-perplexity's: the token stream is BOS
	// followed by the ids (what llama.cpp's tokenizer produces for a model
	// that adds BOS); chunk i is tokens [i·ctx, (i+1)·ctx) with its first
	// token replaced by BOS, there are ⌊len(stream)/ctx⌋ chunks, and only
	// positions ctx/2 .. ctx−2 are scored (predicting tokens ctx/2+1 ..
	// ctx−1 of the chunk): ctx−1−ctx/2 tokens per chunk.
	ProtocolLlamaCpp Protocol = "llama.cpp"
)

// Window is one forward pass of an evaluation: Input is run at positions
// 0..len(Input)−1 and positions First ≤ p < End are scored, position p
// predicting Input[p+1].
type Window struct {
	// Index numbers the window within its protocol's split of a stream
	// (0, 1, …); merged sums are ordered by it.
	Index int     `json:"index"`
	Input []int32 `json:"input"`
	First int     `json:"first"`
	End   int     `json:"end"`
}

// Scored is the number of scored positions.
func (w Window) Scored() int { return w.End - w.First }

// Hash is a 64-bit FNV-1a fingerprint of the window's index, scored range
// and input, used to check that saved log-probabilities belong to it.
func (w Window) Hash() uint64 {
	h := fnv.New64a()
	var b [4]byte
	put := func(v uint32) {
		b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
		h.Write(b[:])
	}
	put(uint32(w.Index))
	put(uint32(w.First))
	put(uint32(w.End))
	for _, t := range w.Input {
		put(uint32(t))
	}
	return h.Sum64()
}

// CountWindows is the number of complete windows a protocol cuts from n ids
// (without BOS) at context length ctx, without building them; an unknown
// protocol or a context below 4 is an error.
func CountWindows(n int, p Protocol, ctx int) (int, error) {
	if ctx < 4 {
		return 0, fmt.Errorf("infer: context length %d too small", ctx)
	}
	switch p {
	case ProtocolFull:
		return n / (ctx - 1), nil
	case ProtocolLlamaCpp:
		return (n + 1) / ctx, nil // the stream is BOS, then the ids
	}
	return 0, fmt.Errorf("infer: unknown perplexity protocol %q (want %q or %q)", p, ProtocolFull, ProtocolLlamaCpp)
}

// Windows cuts ids (without BOS) into the windows of a protocol at
// context length ctx. bos is the BOS token id.
func Windows(ids []int32, p Protocol, ctx int, bos int32) ([]Window, error) {
	k, err := CountWindows(len(ids), p, ctx)
	if err != nil {
		return nil, err
	}
	if k == 0 {
		return nil, fmt.Errorf("infer: %d ids make no complete window of protocol %q at context %d", len(ids), p, ctx)
	}
	out := make([]Window, k)
	for i := range out {
		in := make([]int32, ctx)
		in[0] = bos
		if p == ProtocolFull {
			n := ctx - 1
			copy(in[1:], ids[i*n:(i+1)*n])
			out[i] = Window{Index: i, Input: in, First: 0, End: ctx - 1}
			continue
		}
		// Stream position s holds ids[s-1]; position i·ctx is replaced by BOS.
		copy(in[1:], ids[i*ctx:(i+1)*ctx-1])
		out[i] = Window{Index: i, Input: in, First: ctx / 2, End: ctx - 1}
	}
	return out, nil
}

// ReadIDs parses whitespace-separated non-negative token ids.
func ReadIDs(r io.Reader) ([]int32, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	sc.Split(bufio.ScanWords)
	var ids []int32
	for sc.Scan() {
		v, err := strconv.ParseInt(sc.Text(), 10, 32)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("infer: token id #%d %q is not a non-negative 32-bit integer", len(ids), sc.Text())
		}
		ids = append(ids, int32(v))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("infer: read token ids: %w", err)
	}
	return ids, nil
}

// ReadIDsFile reads a file of whitespace-separated token ids.
func ReadIDsFile(path string) ([]int32, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("infer: %w", err)
	}
	defer f.Close()
	ids, err := ReadIDs(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ids, nil
}
