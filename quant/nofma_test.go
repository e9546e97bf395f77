package quant

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// fmaAllowed are the files whose float arithmetic need not match ggml's
// rounding: the optimised quantizers' searches (their results are judged
// by decoding, never compared with C).
var fmaAllowed = map[string]bool{
	"optimize.go": true, "optk.go": true, "optlayout.go": true, "optlegacy.go": true, "bitnet.go": true, "iqopt.go": true,
}

// amd64FMA matches the raw bytes of a VEX-encoded scalar or packed fused
// multiply-add (vfmadd/vfmsub/vfnmadd/vfnmsub 132/213/231, opcode map
// 0F38) at the start of an instruction.
var amd64FMA = regexp.MustCompile(`^c4[0-9a-f][2a][0-9a-f]{2}(9[689abcdef]|a[689abcdef]|b[689abcdef])`)

// arm64FMA matches Go's arm64 mnemonics of the fused multiply-adds.
var arm64FMA = regexp.MustCompile(`\bF(N)?M(ADD|SUB)[SD]\b|\bVFML[AS]\b`)

// TestNoFusedMultiplyAdd builds the package for amd64 with GOAMD64=v3 and
// for arm64, where Go may fuse a*b+c, and checks that no function outside
// the optimised searches contains a fused multiply-add: the byte-exactness
// with ggml (whose library has none) rests on every product being rounded
// before it is added. Skipped with -short (it compiles the package twice).
func TestNoFusedMultiplyAdd(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the package twice")
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		t.Skipf("go command not found at %s", goBin)
	}
	for _, target := range []struct {
		goarch, level string
		match         func(hex, asm string) bool
	}{
		{"amd64", "v3", func(hex, _ string) bool { return amd64FMA.MatchString(hex) }},
		{"arm64", "", func(_, asm string) bool { return arm64FMA.MatchString(asm) }},
	} {
		t.Run(target.goarch, func(t *testing.T) {
			bin := filepath.Join(t.TempDir(), "quant.test")
			build := exec.Command(goBin, "test", "-c", "-o", bin, ".")
			build.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+target.goarch, "GOAMD64="+target.level, "CGO_ENABLED=0")
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("building for %s: %v\n%s", target.goarch, err, out)
			}
			dump := exec.Command(goBin, "tool", "objdump", "-s", `^github.com/ohms-project/adaptq/quant\.`, bin)
			out, err := dump.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := dump.Start(); err != nil {
				t.Fatal(err)
			}
			bad := map[string]int{}
			allowed := 0
			fn := ""
			sc := bufio.NewScanner(out)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				line := sc.Text()
				if strings.HasPrefix(line, "TEXT ") {
					fn = strings.Fields(line)[1]
					continue
				}
				// "  file.go:12\t0x1234\t\tc4e279b9d3\tASM ..."
				var f []string
				for _, s := range strings.Split(line, "\t") {
					if s = strings.TrimSpace(s); s != "" {
						f = append(f, s)
					}
				}
				if len(f) < 4 {
					continue
				}
				file := f[0][:max(0, strings.LastIndexByte(f[0], ':'))]
				hex, asm := f[2], f[3]
				if !target.match(hex, asm) {
					continue
				}
				if fmaAllowed[file] {
					allowed++ // proof that the matcher sees fused instructions
					continue
				}
				if !strings.HasSuffix(file, "_test.go") {
					bad[fn+" ("+file+")"]++
				}
			}
			if err := dump.Wait(); err != nil {
				t.Fatalf("objdump: %v", err)
			}
			if allowed == 0 {
				t.Errorf("no fused multiply-add found even in the optimised searches: the %s matcher does not work", target.goarch)
			}
			for name, n := range bad {
				t.Errorf("%s: %d fused multiply-add instruction(s) in code that must round like ggml", name, n)
			}
		})
	}
}
