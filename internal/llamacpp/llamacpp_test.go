package llamacpp

import (
	"context"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestPerplexityWindows(t *testing.T) {
	tests := []struct {
		name     string
		ids      []int
		nCtx     int
		want     [][]int
		wantFrom int
	}{
		// With BOS prepended the stream is 9 0 1 2 3 4 5 6 7 8: two chunks
		// of 4, each starting with BOS; the last two tokens are dropped.
		{"two chunks", []int{10, 11, 12, 13, 14, 15, 16, 17, 18}, 4, [][]int{{9, 10, 11, 12}, {9, 14, 15, 16}}, 2},
		{"too short", []int{10, 11}, 4, nil, 2},
		{"exact", []int{10, 11, 12}, 2, [][]int{{9, 10}, {9, 12}}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, from := PerplexityWindows(tc.ids, tc.nCtx, 9)
			if !reflect.DeepEqual(got, tc.want) || from != tc.wantFrom {
				t.Errorf("got %v from %d, want %v from %d", got, from, tc.want, tc.wantFrom)
			}
		})
	}
}

func TestPerplexity(t *testing.T) {
	lp := func(v ...float64) []*float64 {
		out := make([]*float64, len(v))
		for i := range v {
			out[i] = &v[i]
		}
		return out
	}
	tests := []struct {
		name    string
		scores  []WindowScore
		want    float64
		wantErr bool
	}{
		{"uniform over 4", []WindowScore{{LogProbs: lp(-math.Log(4), -math.Log(4))}, {LogProbs: lp(-math.Log(4))}}, 4, false},
		{"certain", []WindowScore{{LogProbs: lp(0, 0)}}, 1, false},
		{"empty", nil, 0, true},
		{"zero probability", []WindowScore{{LogProbs: []*float64{nil}}}, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Perplexity(tc.scores)
			if (err != nil) != tc.wantErr || math.Abs(got-tc.want) > 1e-12 {
				t.Errorf("Perplexity = %g, %v; want %g, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// A request the script cannot serve comes back as an error naming the
// model, not as a hang or a decoding failure.
func TestRunErrors(t *testing.T) {
	o := Require(t)
	_, err := o.Run(context.Background(), &Request{Model: "/nonexistent/model.gguf", Tokenize: []string{"x"}})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/model.gguf") {
		t.Errorf("error %v, want one naming the model", err)
	}
}
