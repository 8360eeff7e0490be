package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const wrkReport = `Running 2s test @ http://127.0.0.1:40000/obj/1k
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.20ms   10.11ms 120.00ms   93.00%
    Req/Sec     5.80k     1.10k    8.00k    70.00%
  Latency Distribution
     50%    2.50ms
     75%    4.00ms
     90%    9.00ms
     99%   54.36ms
  23406 requests in 2.05s, 27.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  11408.88
Transfer/sec:     13.17MB
`

func TestParseWrk(t *testing.T) {
	rps, p99, total, errs, err := parseWrk(wrkReport)
	if err != nil {
		t.Fatal(err)
	}
	if rps != 11408.88 || p99 != 54.36 || total != 23406 || errs != 7 {
		t.Fatalf("parsed rps %v p99 %v total %d errors %d", rps, p99, total, errs)
	}
	us := strings.Replace(wrkReport, "99%   54.36ms", "99%  812.00us", 1)
	if _, p99, _, _, err := parseWrk(us); err != nil || p99 != 0.812 {
		t.Fatalf("p99 in us: %v %v", p99, err)
	}
	if _, _, _, _, err := parseWrk(strings.Replace(wrkReport, "Latency Distribution", "", 1)[:200]); err == nil {
		t.Fatal("a report without Requests/sec parsed")
	}
}

func TestSummarizeCache(t *testing.T) {
	var rs []CacheResult
	for i, v := range []float64{100, 300, 200} {
		rs = append(rs, CacheResult{Round: i + 1, System: "canopy", Workload: "hit-1k", RequestsSec: v * 0.9, P99Ms: v})
		rs = append(rs, CacheResult{Round: i + 1, System: "nginx", Workload: "hit-1k", RequestsSec: v, P99Ms: 1})
	}
	s := summarizeCache(rs, 3, "nginx/test")[0]
	if s.Workload != "hit-1k" || s.CanopyRPS != 180 || s.NginxRPS != 200 || s.Ratio != 0.9 || s.CanopyP99Ms != 200 {
		t.Fatalf("summary %+v", s)
	}
	if s.TargetMet == nil || !*s.TargetMet {
		t.Fatalf("0.9 should meet the 0.8 target: %+v", s)
	}
}

func TestSummarizeCacheSplitsTLS(t *testing.T) {
	rs := []CacheResult{
		{System: "canopy", Workload: "hit-16k", RequestsSec: 80},
		{System: "nginx", Workload: "hit-16k", RequestsSec: 100},
		{System: "canopy", Workload: "hit-16k", TLS: true, RequestsSec: 30},
		{System: "nginx", Workload: "hit-16k", TLS: true, RequestsSec: 60},
	}
	got := summarizeCache(rs, 1, "nginx/test")
	if len(got) != 2 {
		t.Fatalf("%d summaries, want one per transport (workloads not run left out): %+v", len(got), got)
	}
	if got[0].TLS || got[0].Ratio != 0.8 || !got[1].TLS || got[1].Ratio != 0.5 || *got[1].TargetMet {
		t.Fatalf("summaries %+v %+v", got[0], got[1])
	}
}

func TestSelectWorkloads(t *testing.T) {
	all, err := selectWorkloads(nil)
	if err != nil || len(all) != len(cacheWorkloads) {
		t.Fatalf("all: %v %v", all, err)
	}
	got, err := selectWorkloads([]string{"miss-1k", "hit-1k"})
	if err != nil || len(got) != 2 || got[0].name != "hit-1k" || got[1].name != "miss-1k" {
		t.Fatalf("two: %v %v", got, err)
	}
	if _, err := selectWorkloads([]string{"hit-2k"}); err == nil || !strings.Contains(err.Error(), `"hit-2k"`) {
		t.Fatalf("unknown workload: %v", err)
	}
}

// TestRunCacheSmoke runs the comparison briefly, with and without TLS,
// when nginx and wrk are installed.
func TestRunCacheSmoke(t *testing.T) {
	for _, bin := range []string{"nginx", "wrk"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is not installed", bin)
		}
	}
	if testing.Short() {
		t.Skip("runs wrk for 8 s")
	}
	var out bytes.Buffer
	err := RunCache(context.Background(), &out, CacheOptions{Dir: t.TempDir(), Rounds: 1, Duration: time.Second,
		Connections: 2, Threads: 1, Workloads: []string{"hit-1k", "miss-1k"}})
	if err != nil {
		t.Fatal(err)
	}
	var runs, summaries int
	dec := json.NewDecoder(&out)
	for dec.More() {
		var line struct {
			CacheResult
			CanopyRPS float64 `json:"canopy_requests_per_sec"`
			NginxRPS  float64 `json:"nginx_requests_per_sec"`
		}
		if err := dec.Decode(&line); err != nil {
			t.Fatal(err)
		}
		switch line.Bench {
		case "cache":
			runs++
			if line.RequestsSec <= 0 || line.Errors != 0 || (line.Workload == "hit-1k" && line.OriginReqs != 0) {
				t.Errorf("run %+v: want requests, no errors, hits without the origin", line.CacheResult)
			}
		case "cache-summary":
			summaries++
			if line.CanopyRPS <= 0 || line.NginxRPS <= 0 {
				t.Errorf("summary %+v", line)
			}
		}
	}
	if runs != 8 || summaries != 4 {
		t.Errorf("%d runs and %d summaries, want 8 and 4 (2 workloads x 2 systems x plain/TLS)", runs, summaries)
	}
}
