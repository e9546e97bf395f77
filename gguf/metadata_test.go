package gguf

import (
	"strings"
	"testing"
)

func TestMetadataAccessors(t *testing.T) {
	md := Metadata{{"s", "x"}, {"u8", uint8(7)}, {"i32", int32(-3)}, {"i64", int64(5)}, {"f", float32(1)}}
	md.Set("s", "y")
	md.Set("new", uint64(9))
	tests := []struct {
		key     string
		str     bool
		wantS   string
		wantU   uint64
		wantErr string
	}{
		{"s", true, "y", 0, ""},
		{"u8", false, "", 7, ""},
		{"i64", false, "", 5, ""},
		{"new", false, "", 9, ""},
		{"i32", false, "", 0, `"i32" is negative`},
		{"f", false, "", 0, `"f" is float32`},
		{"u8", true, "", 0, `"u8" is uint8, want string`},
		{"missing", true, "", 0, `"missing" is missing`},
		{"missing", false, "", 0, `"missing" is missing`},
	}
	for _, tc := range tests {
		var err error
		if tc.str {
			var got string
			got, err = md.GetString(tc.key)
			if err == nil && got != tc.wantS {
				t.Errorf("GetString(%q) = %q, want %q", tc.key, got, tc.wantS)
			}
		} else {
			var got uint64
			got, err = md.GetUint(tc.key)
			if err == nil && got != tc.wantU {
				t.Errorf("GetUint(%q) = %d, want %d", tc.key, got, tc.wantU)
			}
		}
		if (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%q: error %v, want %q", tc.key, err, tc.wantErr)
		}
	}
	if len(md) != 6 {
		t.Errorf("%d pairs after Set, want 6", len(md))
	}
}
