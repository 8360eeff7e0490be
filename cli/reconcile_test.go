package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"canopy/auth"
	"canopy/checkin"
	"canopy/edge"
	"canopy/internal/testutil"
	"canopy/pos"
	"canopy/reconcile"
)

// seedConflicts appends, through the edge's journal, a ticket admitted
// twice (as two doors that could not see each other would record it) and
// a sale of a SKU with no stock.
func seedConflicts(t *testing.T, e *edge.Edge) {
	t.Helper()
	put := func(kind, key string, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.Journal.Append(context.Background(), kind, key, b); err != nil {
			t.Fatal(err)
		}
	}
	for _, door := range []string{"north", "south"} {
		put(checkin.KindScanned, checkin.TicketKey("t-1"), checkin.Scan{Ticket: "t-1", Type: "GA", Door: door, Direction: checkin.In, Device: "door-" + door, Accepted: true})
	}
	put(pos.KindSKUSet, "sku:tea", pos.SKU{SKU: "tea", Vendor: "tea", Name: "Tea", Price: 300, TrackStock: true, Active: true})
	lines, totals, err := pos.PriceLines([]pos.Line{{SKU: "tea", Name: "Tea", Qty: 2, UnitPrice: 300}}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	put(pos.KindOrderCreated, pos.OrderKey("o-1"), pos.Created{ID: "o-1", Vendor: "tea", Device: "till", Currency: "EUR", Lines: lines, Totals: totals})
}

func TestReportReconcile(t *testing.T) {
	ev := testutil.NewEvent(t, "recon-cli")
	data := t.TempDir()
	e, err := edge.Open(context.Background(), ev.EdgeConfig(t, "edge-1", data), nil)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			e.Close(context.Background())
		}
	})
	seedConflicts(t, e)
	organizer := ev.ValidToken(t, auth.RoleOrganizer)

	// Online, as a table.
	r := runCLI("report", "reconcile", "--url", e.URL(), "--token", organizer)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"RECONCILIATION  event recon-cli", "2 item(s)", "double_entry", "ticket:t-1", "oversold", "sku:tea", "admitted ", "conflict ", "\nhash "} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, r.stdout)
		}
	}

	// Online, as JSON: the report the edge serves, whose hash checks out.
	r = runCLI("report", "reconcile", "--url", e.URL(), "--token", organizer, "--json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	online := r.stdout
	var rep reconcile.Report
	if err := json.Unmarshal([]byte(online), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Counts[reconcile.KindDoubleEntry] != 1 || rep.Counts[reconcile.KindOversold] != 1 || len(rep.Items) != 2 || rep.Hash() != rep.Digest {
		t.Fatalf("report %s", online)
	}
	table := runCLI("report", "reconcile", "--url", e.URL(), "--token", organizer).stdout
	if !strings.Contains(table, "hash "+rep.Digest+"\n") {
		t.Errorf("the table does not print the hash %s:\n%s", rep.Digest, table)
	}

	// Offline, from the data directory: byte-identical JSON.
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	closed = true
	r = runCLI("report", "reconcile", "--dir", data, "--event", ev.Dir, "--json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if r.stdout != online {
		t.Fatalf("offline report differs from the online one:\n%s\n%s", r.stdout, online)
	}
	r = runCLI("report", "reconcile", "--dir", data, "--event", ev.Dir)
	if r.code != 0 || !strings.Contains(r.stdout, "hash "+rep.Digest+"\n") {
		t.Fatalf("offline table (exit %d): %s %s", r.code, r.stdout, r.stderr)
	}

	// Bad input: clear errors, non-zero exit.
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "give --url URL"},
		{[]string{"--url", "http://x", "--dir", data}, "not both"},
		{[]string{"--url", "ftp://x", "--token", organizer}, "http:// or https://"},
		{[]string{"--dir", data}, "needs --event"},
		{[]string{"--dir", t.TempDir(), "--event", ev.Dir}, "no store at"},
		{[]string{"--url", e.URL(), "--event", ev.Dir, "--token", organizer}, "--event goes with --dir"},
	} {
		t.Setenv("CANOPY_TOKEN", "")
		r := runCLI(append([]string{"report", "reconcile"}, c.args...)...)
		if r.code == 0 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q, want it to mention %q", c.args, r.code, r.stderr, c.want)
		}
	}
}

func TestReportReconcileRefusedRole(t *testing.T) {
	ev := testutil.NewEvent(t, "recon-cli-403")
	e, err := edge.Open(context.Background(), ev.EdgeConfig(t, "edge-1", ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	r := runCLI("report", "reconcile", "--url", e.URL(), "--token", ev.ValidToken(t, auth.RoleDoor))
	if r.code == 0 || !strings.Contains(r.stderr, "403") {
		t.Fatalf("a door token: exit %d, stderr %q", r.code, r.stderr)
	}
}
