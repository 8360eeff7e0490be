package bench

import (
	"strings"
	"testing"
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
