package viewset

import "testing"

func TestAllHasUniqueViews(t *testing.T) {
	names := All().Names()
	if len(names) < 6 {
		t.Fatalf("views %v: want idempotency, the pos views, tickets and lots", names)
	}
}
