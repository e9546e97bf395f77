// Package progress draws a one-line progress bar on a terminal. When the
// output is not a terminal it prints nothing until Done, which prints one
// summary line, so logs stay readable.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Bar is a progress bar for a known amount of work in bytes or items.
type Bar struct {
	mu      sync.Mutex
	w       io.Writer
	tty     bool
	label   string
	total   int64
	done    int64
	bytes   bool
	start   time.Time
	lastOut time.Time
}

// New returns a bar writing to w (usually os.Stderr). bytes selects byte
// units for the counts and the rate.
func New(w io.Writer, label string, total int64, bytes bool) *Bar {
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil {
			tty = st.Mode()&os.ModeCharDevice != 0
		}
	}
	return &Bar{w: w, tty: tty, label: label, total: total, bytes: bytes, start: time.Now()}
}

// Set records the amount of work done so far and redraws at most ten times
// a second.
func (b *Bar) Set(done int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done = done
	if b.tty && time.Since(b.lastOut) > 100*time.Millisecond {
		b.lastOut = time.Now()
		fmt.Fprintf(b.w, "\r%s", b.line())
	}
}

// Add adds to the amount of work done.
func (b *Bar) Add(n int64) {
	b.mu.Lock()
	d := b.done + n
	b.mu.Unlock()
	b.Set(d)
}

// Done draws the final state and ends the line.
func (b *Bar) Done() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tty {
		fmt.Fprintf(b.w, "\r%s\n", b.line())
	} else {
		fmt.Fprintln(b.w, b.line())
	}
}

func (b *Bar) line() string {
	const width = 30
	frac := 1.0
	if b.total > 0 {
		frac = min(1, float64(b.done)/float64(b.total))
	}
	fill := int(frac * width)
	secs := time.Since(b.start).Seconds()
	rate := ""
	if secs > 0 {
		r := float64(b.done) / secs
		if b.bytes {
			rate = fmt.Sprintf("%s/s", FormatBytes(int64(r)))
		} else {
			rate = fmt.Sprintf("%.1f/s", r)
		}
	}
	count := fmt.Sprintf("%d/%d", b.done, b.total)
	if b.bytes {
		count = FormatBytes(b.done) + "/" + FormatBytes(b.total)
	}
	return fmt.Sprintf("%-12s [%s%s] %5.1f%% %s %s %.1fs", b.label,
		strings.Repeat("=", fill), strings.Repeat(" ", width-fill), 100*frac, count, rate, secs)
}

// FormatBytes renders a byte count with binary units ("1.5 GiB").
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// SetTotal changes the amount of work to do.
func (b *Bar) SetTotal(total int64) {
	b.mu.Lock()
	b.total = total
	b.mu.Unlock()
}
