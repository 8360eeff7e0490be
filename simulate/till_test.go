package simulate

import (
	"testing"

	"canopy/pos"
)

// TestPayPlan checks every payment plan against the payment rules the edge
// applies: the settled parts add up to the total, only cash exceeds what is
// owed (and then gives change), and only the last payment completes it.
func TestPayPlan(t *testing.T) {
	kinds := map[string]bool{}
	for n := 0; n < 8; n++ {
		for _, total := range []int64{1, 2, 99, 100, 101, 450, 499, 500, 501, 1234, 99999} {
			plan := payPlan(n, total)
			owed := total
			sig := ""
			for i, p := range plan {
				switch {
				case p.method == pos.MethodCash && p.settle != min(owed, p.tender):
					t.Fatalf("n=%d total=%d step %d: cash settles %d of %d tendered with %d owed", n, total, i, p.settle, p.tender, owed)
				case p.method != pos.MethodCash && (p.tender > owed || p.settle != p.tender || p.change != 0):
					t.Fatalf("n=%d total=%d step %d: %s %+v with %d owed", n, total, i, p.method, p, owed)
				case p.change != p.tender-p.settle || p.settle < 1:
					t.Fatalf("n=%d total=%d step %d: %+v", n, total, i, p)
				}
				owed -= p.settle
				if (owed == 0) != (i == len(plan)-1) {
					t.Fatalf("n=%d total=%d: step %d leaves %d owed in a plan of %d", n, total, i, owed, len(plan))
				}
				sig += p.method
				if p.change > 0 {
					sig += "+change"
				}
				sig += " "
			}
			kinds[sig] = true
		}
	}
	for _, want := range []string{"card ", "cash card ", "cash+change ", "card cash+change "} {
		if !kinds[want] {
			t.Errorf("no plan %q among %v", want, kinds)
		}
	}
}
