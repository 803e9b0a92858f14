package testharness

import (
	"io"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"testing"
	"time"
)

var maxRSS = regexp.MustCompile(`Maximum resident set size \(kbytes\): (\d+)`)

// Measure runs a command under /usr/bin/time -v, stdout discarded, and
// returns its wall time and peak RSS in MiB. env is added to the process
// environment.
func Measure(tb testing.TB, env []string, name string, args ...string) (time.Duration, float64) {
	tb.Helper()
	cmd := exec.Command("/usr/bin/time", append([]string{"-v", name}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = io.Discard
	errf, err := os.CreateTemp(tb.TempDir(), "time")
	if err != nil {
		tb.Fatal(err)
	}
	defer errf.Close()
	cmd.Stderr = errf
	start := time.Now()
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(errf.Name())
		tb.Fatalf("%s: %v\n%s", name, err, out)
	}
	took := time.Since(start)
	out, _ := os.ReadFile(errf.Name())
	m := maxRSS.FindSubmatch(out)
	if m == nil {
		tb.Fatalf("no peak RSS in /usr/bin/time output:\n%s", out)
	}
	kb, _ := strconv.Atoi(string(m[1]))
	return took, float64(kb) / 1024
}

// Median of xs (which it sorts).
func Median(xs []float64) float64 {
	sort.Float64s(xs)
	return xs[len(xs)/2]
}
