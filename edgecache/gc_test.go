package edgecache

import (
	"runtime/debug"
	"testing"
)

func TestSetGCPercent(t *testing.T) {
	t.Setenv("GOGC", "")
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	for _, tc := range []struct{ in, want int }{{0, DefaultGCPercent}, {250, 250}} {
		got, err := SetGCPercent(tc.in)
		if err != nil || got != tc.want {
			t.Fatalf("SetGCPercent(%d) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
		if cur := debug.SetGCPercent(1); cur != tc.want {
			t.Fatalf("after SetGCPercent(%d) the runtime has %d", tc.in, cur)
		}
	}
	for _, bad := range []int{-1, 10001} {
		if _, err := SetGCPercent(bad); err == nil {
			t.Errorf("SetGCPercent(%d): no error", bad)
		}
	}
}

func TestSetGCPercentEnvWins(t *testing.T) {
	t.Setenv("GOGC", "150")
	prev := debug.SetGCPercent(150)
	defer debug.SetGCPercent(prev)
	got, err := SetGCPercent(700)
	if err != nil || got != 150 {
		t.Fatalf("SetGCPercent(700) with GOGC=150 = %d, %v; want 150", got, err)
	}
	if cur := debug.SetGCPercent(150); cur != 150 {
		t.Fatalf("runtime has %d, want GOGC's 150", cur)
	}
}
