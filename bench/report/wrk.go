package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// printWrk prints the numbers of the wrk output in file as one tab-separated
// line and returns the exit status.
func printWrk(file string) int {
	f, err := os.Open(file)
	if err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		return 1
	}
	defer f.Close()
	w, err := parseWrk(f)
	if err != nil {
		fmt.Fprintf(os.Stderr, "report: %s: %v\n", file, err)
		return 1
	}
	fmt.Printf("%.2f\t%.0f\t%.4f\t%.4f\t%.0f\t%.0f\n", w.rps, w.requests, w.p50, w.p99, w.sockErr, w.non2xx)
	return 0
}

// wrkResult is what bench/compare.sh keeps of one wrk --latency run.
type wrkResult struct {
	rps      float64 // Requests/sec
	requests float64 // "N requests in ..."
	p50, p99 float64 // latency percentiles, milliseconds
	sockErr  float64 // connect + read + write + timeout errors
	non2xx   float64 // "Non-2xx or 3xx responses"
}

// parseWrk reads wrk's standard output. A run without a "Requests/sec" line
// or without its latency distribution (wrk failed, or ran without
// --latency) is an error.
func parseWrk(r io.Reader) (wrkResult, error) {
	var w wrkResult
	var haveRPS, haveP50, haveP99 bool
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		var err error
		switch {
		case f[0] == "Requests/sec:":
			w.rps, err = strconv.ParseFloat(f[1], 64)
			haveRPS = err == nil
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			w.requests, err = strconv.ParseFloat(f[0], 64)
		case f[0] == "50%":
			w.p50, err = wrkMillis(f[1])
			haveP50 = err == nil
		case f[0] == "99%":
			w.p99, err = wrkMillis(f[1])
			haveP99 = err == nil
		case f[0] == "Socket" && len(f) >= 3 && f[1] == "errors:":
			// Socket errors: connect 0, read 3, write 0, timeout 0
			for i := 3; i < len(f); i += 2 {
				var n float64
				n, err = strconv.ParseFloat(strings.TrimSuffix(f[i], ","), 64)
				if err != nil {
					break
				}
				w.sockErr += n
			}
		case f[0] == "Non-2xx":
			// Non-2xx or 3xx responses: 12
			w.non2xx, err = strconv.ParseFloat(f[len(f)-1], 64)
		}
		if err != nil {
			return w, fmt.Errorf("wrk output: %q: %w", sc.Text(), err)
		}
	}
	if err := sc.Err(); err != nil {
		return w, err
	}
	if !haveRPS || !haveP50 || !haveP99 {
		return w, errors.New("wrk output has no Requests/sec line or no latency distribution")
	}
	return w, nil
}

// wrkMillis converts one of wrk's times ("812.00us", "1.24ms", "1.02s",
// "1.50m", "1.00h") to milliseconds.
func wrkMillis(s string) (float64, error) {
	for _, u := range []struct {
		suffix string
		ms     float64
	}{{"us", 0.001}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, err
			}
			return n * u.ms, nil
		}
	}
	return 0, fmt.Errorf("time %q has no unit", s)
}
