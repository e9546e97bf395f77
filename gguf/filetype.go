package gguf

import (
	"fmt"
	"strings"
)

// FileType is llama.cpp's llama_ftype: the value of general.file_type and
// the preset llama-quantize is asked for ("Q4_K_M" is 15). The numbers and
// names are those of include/llama.h and tools/quantize/quantize.cpp of the
// llama.cpp release node-llama-cpp 3.21.1 bundles.
type FileType uint32

// fileTypes lists every llama_ftype llama-quantize offers, by its
// llama-quantize name in lower case.
var fileTypes = []struct {
	name string
	ft   FileType
}{
	{"f32", 0}, {"f16", 1}, {"q4_0", 2}, {"q4_1", 3}, {"q8_0", 7}, {"q5_0", 8}, {"q5_1", 9},
	{"q2_k", 10}, {"q3_k_s", 11}, {"q3_k_m", 12}, {"q3_k_l", 13}, {"q4_k_s", 14}, {"q4_k_m", 15},
	{"q5_k_s", 16}, {"q5_k_m", 17}, {"q6_k", 18}, {"iq2_xxs", 19}, {"iq2_xs", 20}, {"q2_k_s", 21},
	{"iq3_xs", 22}, {"iq3_xxs", 23}, {"iq1_s", 24}, {"iq4_nl", 25}, {"iq3_s", 26}, {"iq3_m", 27},
	{"iq2_s", 28}, {"iq2_m", 29}, {"iq4_xs", 30}, {"iq1_m", 31}, {"bf16", 32}, {"tq1_0", 36},
	{"tq2_0", 37}, {"mxfp4_moe", 38}, {"nvfp4", 39}, {"q1_0", 40}, {"q2_0", 41},
}

// fileTypeAliases are llama-quantize's short names: Q3_K, Q4_K and Q5_K
// mean the _M mixtures.
var fileTypeAliases = map[string]string{"q3_k": "q3_k_m", "q4_k": "q4_k_m", "q5_k": "q5_k_m"}

// ParseFileType maps a llama-quantize name ("Q4_K_M", "q4_k_m", the alias
// "q4_k") to its llama_ftype, ignoring case.
func ParseFileType(name string) (FileType, error) {
	n := strings.ToLower(name)
	if a, ok := fileTypeAliases[n]; ok {
		n = a
	}
	for _, f := range fileTypes {
		if f.name == n {
			return f.ft, nil
		}
	}
	return 0, fmt.Errorf("gguf: %q is not a llama.cpp file type (llama-quantize's names: q4_k_m, q8_0, ...)", name)
}

// String is the file type's llama-quantize name in lower case ("q4_k_m"),
// or "ftype(n)" for a number llama.cpp does not define.
func (f FileType) String() string {
	for _, e := range fileTypes {
		if e.ft == f {
			return e.name
		}
	}
	return fmt.Sprintf("ftype(%d)", uint32(f))
}
