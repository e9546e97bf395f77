package gguf

import "testing"

func TestParseFileType(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want FileType
		name string
	}{
		{"Q4_K_M", 15, "q4_k_m"}, {"q4_k", 15, "q4_k_m"}, {"q3_k", 12, "q3_k_m"}, {"Q5_K", 17, "q5_k_m"},
		{"q8_0", 7, "q8_0"}, {"f32", 0, "f32"}, {"tq2_0", 37, "tq2_0"}, {"iq4_xs", 30, "iq4_xs"}, {"bf16", 32, "bf16"},
	} {
		got, err := ParseFileType(tc.in)
		if err != nil || got != tc.want || got.String() != tc.name {
			t.Errorf("ParseFileType(%q) = %d (%s), %v; want %d (%s)", tc.in, got, got, err, tc.want, tc.name)
		}
	}
	for _, bad := range []string{"", "q4_k_x", "q4", "bitnet"} {
		if _, err := ParseFileType(bad); err == nil {
			t.Errorf("ParseFileType(%q) succeeded", bad)
		}
	}
	if s := FileType(5).String(); s != "ftype(5)" {
		t.Errorf("FileType(5) = %q", s)
	}
}
