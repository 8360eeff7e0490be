package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
)

func TestCacheFailoverBench(t *testing.T) {
	var out bytes.Buffer
	err := RunCacheFailover(context.Background(), &out, CacheFailoverOptions{Dir: t.TempDir(), Trials: 3})
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(&out)
	var modes []string
	for dec.More() {
		var r CacheFailoverResult
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		if r.Bench != "cache-failover" || r.Trials != 3 || r.P50Millis <= 0 || r.P99Millis < r.P50Millis || !r.Pass {
			t.Errorf("result %+v: want 3 trials, 0 < p50 <= p99 and the 1s target met", r)
		}
		modes = append(modes, r.Mode)
	}
	if len(modes) != 2 || modes[0] != "refuse" || modes[1] != "hang" {
		t.Fatalf("modes %v, want [refuse hang]", modes)
	}
	if err := RunCacheFailover(context.Background(), &out, CacheFailoverOptions{Modes: []string{"unplug"}}); err == nil {
		t.Fatal("an unknown mode was accepted")
	}
}
