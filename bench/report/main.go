// Command report turns bench/compare.sh's raw measurements into the markdown
// table of docs/benchmarks.md, the ratios, and a check of candor's
// performance targets against nginx.
//
//	report -dir DIR [-hz 100] [-cpus 1] [-other-max 5]
//	report -wrk FILE
//
// With -wrk it parses one wrk --latency output instead and prints, tab-separated
// on one line, req_s requests p50_ms p99_ms socket_errors non_2xx (exit status 1
// when the output has no result: wrk failed).
//
// DIR holds, tab-separated, one record per line:
//
//	runs.tsv  scenario label target round req_s requests p50_ms p99_ms proxy_ticks upstream_ticks socket_errors non_2xx [other_ticks wall_s]
//	rss.tsv   scenario target rss_kib
//	idle.tsv  server conns rss_before_kib rss_idle_kib rss_after_kib
//
// target is direct, nginx or candor. proxy_ticks are the clock ticks (utime +
// stime from /proc/PID/stat) the proxy's processes used during the run (for
// direct: the upstream's). other_ticks is the machine's busy time during the
// run that none of the benchmark's processes used (other load: noise), wall_s
// the run's length. The output is markdown on standard output.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

type run struct {
	rps, p50, p99   float64
	requests        float64
	ticks, upTicks  float64
	sockErr, non2xx float64
	other, wall     float64
}

type cell struct {
	runs  []run
	rssKB float64
}

type scenario struct {
	name, label string
	cells       map[string]*cell
}

var targets = []string{"direct", "nginx", "candor"}

func main() {
	dir := flag.String("dir", ".", "directory with runs.tsv, rss.tsv, idle.tsv")
	hz := flag.Float64("hz", 100, "clock ticks per second (getconf CLK_TCK)")
	cpus := flag.Float64("cpus", 1, "the machine's cores (nproc)")
	otherMax := flag.Float64("other-max", 5, "percent of the machine: more other load marks the run as disturbed")
	wrkFile := flag.String("wrk", "", "parse this wrk --latency output and print its numbers")
	flag.Parse()
	if *wrkFile != "" {
		os.Exit(printWrk(*wrkFile))
	}
	out := bufio.NewWriter(os.Stdout)
	report(out, *dir, *hz, *cpus, *otherMax)
	if err := out.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

// report writes the tables for the measurements in dir to w.
func report(w io.Writer, dir string, hz, cpus, otherMax float64) {
	var order []string
	scen := map[string]*scenario{}
	get := func(name, label, target string) *cell {
		s := scen[name]
		if s == nil {
			s = &scenario{name: name, label: label, cells: map[string]*cell{}}
			scen[name] = s
			order = append(order, name)
		}
		if label != "" {
			s.label = label
		}
		c := s.cells[target]
		if c == nil {
			c = &cell{}
			s.cells[target] = c
		}
		return c
	}
	for _, f := range records(filepath.Join(dir, "runs.tsv"), 12) {
		c := get(f[0], f[1], f[2])
		r := run{
			rps: num(f[4]), requests: num(f[5]), p50: num(f[6]), p99: num(f[7]),
			ticks: num(f[8]), upTicks: num(f[9]), sockErr: num(f[10]), non2xx: num(f[11]),
		}
		if len(f) >= 14 {
			r.other, r.wall = num(f[12]), num(f[13])
		}
		c.runs = append(c.runs, r)
	}
	for _, f := range records(filepath.Join(dir, "rss.tsv"), 3) {
		if s := scen[f[0]]; s != nil {
			if c := s.cells[f[1]]; c != nil {
				c.rssKB = num(f[2])
			}
		}
	}

	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }

	p("| scenario |")
	for _, t := range targets {
		cpu := "CPU s/10k"
		if t == "direct" {
			cpu = "CPU s/10k (upstream)"
		}
		p(" %s req/s med [min-max] | %s p50 / p99 ms | %s %s | %s RSS MiB |", t, t, t, cpu, t)
	}
	p(" candor/direct req/s | candor/direct p99 | candor/nginx req/s | candor/nginx CPU | candor/nginx p99 |\n")
	p("|---|")
	for range targets {
		p("--:|--:|--:|--:|")
	}
	p("--:|--:|--:|--:|--:|\n")

	var errNotes []string
	for _, name := range order {
		s := scen[name]
		p("| %s |", s.label)
		for _, t := range targets {
			c := s.cells[t]
			if c == nil || len(c.runs) == 0 {
				p(" - | - | - | - |")
				continue
			}
			lo, med, hi := spread(c.runs, func(r run) float64 { return r.rps })
			p(" %s [%s-%s] | %s / %s | %s | %s |", rate(med), rate(lo), rate(hi),
				ms(median(c.runs, func(r run) float64 { return r.p50 })),
				ms(median(c.runs, func(r run) float64 { return r.p99 })),
				f3(cpuPer10k(c, t, hz)), f1(c.rssKB/1024))
			var se, nx float64
			for _, r := range c.runs {
				se += r.sockErr
				nx += r.non2xx
			}
			if se > 0 || nx > 0 {
				errNotes = append(errNotes, fmt.Sprintf("%s, %s: %.0f socket errors, %.0f non-2xx/3xx responses over %d runs", s.label, t, se, nx, len(c.runs)))
			}
		}
		d, n, c := s.cells["direct"], s.cells["nginx"], s.cells["candor"]
		p(" %s | %s | %s | %s | %s |\n",
			ratio(medRPS(c), medRPS(d)), ratio(medP99(c), medP99(d)),
			ratio(medRPS(c), medRPS(n)), ratio(cpuPer10k(c, "candor", hz), cpuPer10k(n, "nginx", hz)),
			ratio(medP99(c), medP99(n)))
	}
	p("\n")
	if len(errNotes) > 0 {
		p("Errors reported by wrk:\n\n")
		for _, e := range errNotes {
			p("- %s\n", e)
		}
		p("\n")
	} else {
		p("wrk reported no socket errors and no non-2xx/3xx responses in any run.\n\n")
	}

	// Other load on the machine during the measured runs.
	var loadLines []string
	var worst float64
	for _, name := range order {
		var other, wall float64
		for _, t := range targets {
			if c := scen[name].cells[t]; c != nil {
				for _, r := range c.runs {
					other += r.other
					wall += r.wall
				}
			}
		}
		if wall == 0 {
			continue
		}
		share := other / (wall * cpus * hz) * 100
		if share > worst {
			worst = share
		}
		loadLines = append(loadLines, fmt.Sprintf("%s %.1f%%", scen[name].label, share))
	}
	if len(loadLines) > 0 {
		p("Other load: share of the machine's CPU (all %.0f cores) busy during the measured runs outside the benchmark's own processes (from /proc/stat; a few percent is accounting slack): %s.", cpus, strings.Join(loadLines, "; "))
		if worst > otherMax {
			p(" **Above %.0f%%: something else ran on the machine during this run; its numbers are disturbed.**", otherMax)
		}
		p("\n\n")
	}

	// The targets: candor against nginx.
	p("Targets (ratios are candor / nginx unless stated; CPU is per request):\n\n")
	p("| target | scenario | measured | verdict |\n|---|---|---|---|\n")
	check := func(target, name, measured string, ok bool, known bool) {
		v := "not met"
		if !known {
			v = "not measured"
		} else if ok {
			v = "met"
		}
		label := name
		if s := scen[name]; s != nil {
			label = s.label
		}
		p("| %s | %s | %s | %s |\n", target, label, measured, v)
	}
	cmp := func(target, name string, a, b float64, what string, limit float64, atMost bool) {
		if a <= 0 || b <= 0 {
			check(target, name, "-", false, false)
			return
		}
		r := a / b
		ok := r <= limit
		if !atMost {
			ok = r >= limit
		}
		shown := fmt.Sprintf("%.2f", r)
		if shown == fmt.Sprintf("%.2f", limit) {
			shown = fmt.Sprintf("%.3f", r) // at the limit: the digit that decides
		}
		check(target, name, fmt.Sprintf("%s %s (%s)", what, shown, pct(r)), ok, true)
	}
	for _, name := range []string{"small64", "small256", "16k"} {
		s := scen[name]
		if s == nil {
			continue
		}
		c, n := s.cells["candor"], s.cells["nginx"]
		cmp("CPU per request <= nginx", name, cpuPer10k(c, "candor", hz), cpuPer10k(n, "nginx", hz), "CPU ratio", 1.0, true)
		cmp("req/s >= nginx", name, medRPS(c), medRPS(n), "req/s ratio", 1.0, false)
		cmp("p99 <= nginx", name, medP99(c), medP99(n), "p99 ratio", 1.0, true)
	}
	for _, name := range []string{"1m", "post64k"} {
		s := scen[name]
		if s == nil {
			continue
		}
		c, n := s.cells["candor"], s.cells["nginx"]
		cmp("CPU within 10% of nginx", name, cpuPer10k(c, "candor", hz), cpuPer10k(n, "nginx", hz), "CPU ratio", 1.10, true)
		cmp("req/s within 10% of nginx", name, medRPS(c), medRPS(n), "req/s ratio", 0.90, false)
		cmp("p99 within 10% of nginx", name, medP99(c), medP99(n), "p99 ratio", 1.10, true)
	}
	if st, sm := scen["json_strict"], scen["json_stream"]; st != nil && sm != nil {
		cmp("strict JSON CPU <= 1.2x streaming", "json_strict",
			cpuPer10k(st.cells["candor"], "candor", hz), cpuPer10k(sm.cells["candor"], "candor", hz),
			"candor strict / streaming CPU", 1.20, true)
	}
	const idleTarget = "RSS < 64 MiB with 10000 idle connections"
	idleChecked := false
	for _, f := range records(filepath.Join(dir, "idle.tsv"), 5) {
		if f[0] != "candor" {
			continue
		}
		mib := num(f[3]) / 1024
		if n := num(f[1]); n < 10000 {
			// fewer connections say little about the target: shown, not judged
			p("| %s | idle keep-alive connections | candor %.1f MiB with %.0f | not measured (%.0f connections) |\n", idleTarget, mib, n, n)
		} else {
			check(idleTarget, "idle keep-alive connections", fmt.Sprintf("candor %.1f MiB with %.0f", mib, n), mib < 64, mib > 0)
		}
		idleChecked = true
	}
	if !idleChecked {
		check(idleTarget, "idle keep-alive connections", "-", false, false)
	}
	p("\n")

	if idle := records(filepath.Join(dir, "idle.tsv"), 5); len(idle) > 0 {
		p("RSS with idle keep-alive client connections (each sent one request, then idle):\n\n")
		p("| server | connections | RSS before MiB | RSS with the connections open MiB | RSS after closing MiB |\n|---|--:|--:|--:|--:|\n")
		for _, f := range idle {
			p("| %s | %s | %s | %s | %s |\n", f[0], f[1], f1(num(f[2])/1024), f1(num(f[3])/1024), f1(num(f[4])/1024))
		}
		p("\n")
	}
}

func cpuPer10k(c *cell, target string, hz float64) float64 {
	if c == nil {
		return 0
	}
	var ticks, req float64
	for _, r := range c.runs {
		ticks += r.ticks
		req += r.requests
	}
	if req == 0 {
		return 0
	}
	return ticks / hz / req * 10000
}

func medRPS(c *cell) float64 {
	if c == nil {
		return 0
	}
	return median(c.runs, func(r run) float64 { return r.rps })
}

func medP99(c *cell) float64 {
	if c == nil {
		return 0
	}
	return median(c.runs, func(r run) float64 { return r.p99 })
}

func spread(rs []run, f func(run) float64) (lo, med, hi float64) {
	v := values(rs, f)
	return v[0], med1(v), v[len(v)-1]
}

func median(rs []run, f func(run) float64) float64 {
	if len(rs) == 0 {
		return 0
	}
	return med1(values(rs, f))
}

func values(rs []run, f func(run) float64) []float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	sort.Float64s(v)
	return v
}

func med1(v []float64) float64 {
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

func ratio(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func pct(r float64) string {
	d := (r - 1) * 100
	if d >= 0 {
		return fmt.Sprintf("%.0f%% above", d)
	}
	return fmt.Sprintf("%.0f%% below", -d)
}

func rate(v float64) string {
	if v >= 100 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

func ms(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func f1(v float64) string {
	if v <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", v)
}

func f3(v float64) string {
	if v <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f", v)
}

func num(s string) float64 {
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return 0
	}
	return v
}

// records reads a tab-separated file; a missing file is no records.
func records(path string, fields int) [][]string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out [][]string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) < fields {
			fmt.Fprintf(os.Stderr, "report: %s: short record %q\n", path, line)
			continue
		}
		out = append(out, f)
	}
	return out
}
