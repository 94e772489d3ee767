package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The raw files as bench/compare.sh writes them: three rounds of 100 B at 64
// connections, one of 1 MiB (candor just over nginx's CPU by more than 10%,
// with socket errors), the two JSON routes on candor, and the idle test.
const (
	runsTSV = `small64	100 B, 64 conns	direct	1	60000	300000	0.8000	4.0000	150	150	0	0	10	5.000
small64	100 B, 64 conns	nginx	1	30000	150000	1.6000	5.0000	450	150	0	0	10	5.000
small64	100 B, 64 conns	candor	1	33000	165000	1.4000	4.5000	400	150	0	0	10	5.000
small64	100 B, 64 conns	nginx	2	32000	160000	1.5000	4.8000	450	150	0	0	10	5.000
small64	100 B, 64 conns	candor	2	34000	170000	1.3000	4.4000	400	150	0	0	10	5.000
small64	100 B, 64 conns	direct	2	62000	310000	0.9000	4.2000	150	150	0	0	10	5.000
small64	100 B, 64 conns	candor	3	35000	175000	1.2000	4.6000	400	150	0	0	10	5.000
small64	100 B, 64 conns	direct	3	61000	305000	0.8500	4.1000	150	150	0	0	10	5.000
small64	100 B, 64 conns	nginx	3	31000	155000	1.5500	4.9000	450	150	0	0	10	5.000
1m	1 MiB	direct	1	1500	7500	20.0000	50.0000	100	100	0	0	0	5.000
1m	1 MiB	nginx	1	1000	5000	50.0000	100.0000	400	100	0	0	0	5.000
1m	1 MiB	candor	1	950	4750	52.0000	105.0000	420	100	3	0	0	5.000
json_stream	JSON 16 KiB, streaming route	candor	1	20000	100000	3.0000	9.0000	200	100	0	0	0	5.000
json_strict	JSON 16 KiB, strict route	candor	1	19000	100000	3.2000	9.5000	230	100	0	0	0	5.000
`
	rssTSV  = "small64\tdirect\t11162\nsmall64\tnginx\t24000\nsmall64\tcandor\t30720\n"
	idleTSV = "candor\t10000\t15000\t70000\t69000\nnginx\t10000\t24000\t30000\t25000\n"
)

func TestReport(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"runs.tsv": runsTSV, "rss.tsv": rssTSV, "idle.tsv": idleTSV} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var b strings.Builder
	report(&b, dir, 100, 2, 5)
	out := b.String()

	for _, want := range []string{
		// medians [min-max], p50 / p99 medians, CPU s per 10k requests
		// (direct: 4.5 s over 915,000 requests), RSS, then the ratios:
		// candor/direct req/s 34000/61000, p99 4.5/4.1; candor/nginx req/s
		// 34000/31000, CPU 0.235/0.290, p99 4.5/4.9.
		"| 100 B, 64 conns | 61000 [60000-62000] | 0.85 / 4.10 | 0.049 | 10.9 | 31000 [30000-32000] | 1.55 / 4.90 | 0.290 | 23.4 | 34000 [33000-35000] | 1.30 / 4.50 | 0.235 | 30.0 | 0.56 | 1.10 | 1.10 | 0.81 | 0.92 |",
		// no RSS recorded: a dash
		"| 1 MiB | 1500 [1500-1500] | 20.0 / 50.0 | 1.333 | - | 1000 [1000-1000] | 50.0 / 100 | 8.000 | - | 950 [950-950] | 52.0 / 105 | 8.842 | - |",
		"- 1 MiB, candor: 3 socket errors, 0 non-2xx/3xx responses over 1 runs",
		"| CPU per request <= nginx | 100 B, 64 conns | CPU ratio 0.81 (19% below) | met |",
		"| req/s >= nginx | 100 B, 64 conns | req/s ratio 1.10 (10% above) | met |",
		"| p99 <= nginx | 100 B, 64 conns | p99 ratio 0.92 (8% below) | met |",
		"| CPU within 10% of nginx | 1 MiB | CPU ratio 1.11 (11% above) | not met |",
		"| req/s within 10% of nginx | 1 MiB | req/s ratio 0.95 (5% below) | met |",
		"| p99 within 10% of nginx | 1 MiB | p99 ratio 1.05 (5% above) | met |",
		"| strict JSON CPU <= 1.2x streaming | JSON 16 KiB, strict route | candor strict / streaming CPU 1.15 (15% above) | met |",
		"| RSS < 64 MiB with 10000 idle connections | idle keep-alive connections | candor 68.4 MiB with 10000 | not met |",
		"| candor | 10000 | 14.6 | 68.4 | 67.4 |",
		"| nginx | 10000 | 23.4 | 29.3 | 24.4 |",
		// 30 other ticks over 15 s of 2 cores at 100 Hz
		"100 B, 64 conns 1.0%",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks\n%s\n\nreport:\n%s", want, out)
		}
	}
	for _, absent := range []string{"POST 64 KiB", "not measured", "disturbed"} {
		if strings.Contains(out, absent) {
			t.Errorf("report has %q, which was not measured or not disturbed:\n%s", absent, out)
		}
	}
}

// The idle-connection target is judged at 10,000 connections only: with
// fewer, or without idle.tsv (the test did not complete), it is not measured.
func TestReportIdleNotMeasured(t *testing.T) {
	for idle, want := range map[string]string{
		"":                                    "| RSS < 64 MiB with 10000 idle connections | idle keep-alive connections | - | not measured |",
		"candor\t2000\t15000\t43008\t43008\n": "| RSS < 64 MiB with 10000 idle connections | idle keep-alive connections | candor 42.0 MiB with 2000 | not measured (2000 connections) |",
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "runs.tsv"), []byte(runsTSV), 0o644); err != nil {
			t.Fatal(err)
		}
		if idle != "" {
			if err := os.WriteFile(filepath.Join(dir, "idle.tsv"), []byte(idle), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		var b strings.Builder
		report(&b, dir, 100, 2, 5)
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks\n%s\n\nreport:\n%s", want, b.String())
		}
	}
}

func TestParseWrk(t *testing.T) {
	for _, tc := range []struct {
		name, out string
		want      wrkResult
	}{{
		name: "keep-alive",
		out: `Running 2s test @ http://127.0.0.1:28102/1m
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    51.03ms   20.17ms 189.21ms   73.72%
    Req/Sec   549.53     63.43   676.00     84.21%
  Latency Distribution
     50%   50.01ms
     75%   61.90ms
     90%   73.97ms
     99%  115.34ms
  2252 requests in 2.06s, 2.20GB read
Requests/sec:   1094.09
Transfer/sec:      1.07GB
`,
		want: wrkResult{rps: 1094.09, requests: 2252, p50: 50.01, p99: 115.34},
	}, {
		name: "errors and other units",
		out: `Running 5s test @ http://127.0.0.1:28104/small
  2 threads and 256 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   10.01ms   80.20ms   1.99s    99.12%
    Req/Sec    41.07k     2.88k   46.03k    65.00%
  Latency Distribution
     50%  812.00us
     75%    1.49ms
     90%    3.10ms
     99%    1.02s
  164522 requests in 5.03s, 39.07MB read
  Socket errors: connect 0, read 12, write 3, timeout 7
  Non-2xx or 3xx responses: 41
Requests/sec:  32708.29
Transfer/sec:      7.77MB
`,
		want: wrkResult{rps: 32708.29, requests: 164522, p50: 0.812, p99: 1020, sockErr: 22, non2xx: 41},
	}} {
		got, err := parseWrk(strings.NewReader(tc.out))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
	// wrk failed: no result, not a run of zero requests per second
	if _, err := parseWrk(strings.NewReader("unable to connect to 127.0.0.1:28104 Connection refused\n")); err == nil {
		t.Error("output without a result: no error")
	}
}
