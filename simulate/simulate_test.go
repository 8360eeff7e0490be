package simulate_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"canopy/auth"
	"canopy/checkin"
	"canopy/edge"
	"canopy/internal/testutil"
	"canopy/salesreport"
	"canopy/simulate"
)

func TestNewRefusesBadConfig(t *testing.T) {
	ev := testutil.NewEvent(t, "sim-config")
	other := testutil.NewEvent(t, "sim-config")
	for name, tc := range map[string]struct {
		cfg  simulate.Config
		want string
	}{
		"no url":          {simulate.Config{Event: ev.Event, Key: ev.Key}, "URL"},
		"no event":        {simulate.Config{URL: "http://x", Key: ev.Key}, "Event"},
		"no key":          {simulate.Config{URL: "http://x", Event: ev.Event}, "Key"},
		"other key":       {simulate.Config{URL: "http://x", Event: ev.Event, Key: other.Key}, "not the key"},
		"negative rate":   {simulate.Config{URL: "http://x", Event: ev.Event, Key: ev.Key, Rate: -1}, "Rate"},
		"negative lot":    {simulate.Config{URL: "http://x", Event: ev.Event, Key: ev.Key, LotDuration: -time.Second}, "LotDuration"},
		"soft close ms":   {simulate.Config{URL: "http://x", Event: ev.Event, Key: ev.Key, SoftClose: 1500 * time.Millisecond}, "SoftClose"},
		"url and edges":   {simulate.Config{URL: "http://x", Edges: []string{"http://y"}, Event: ev.Event, Key: ev.Key}, "not both"},
		"empty edge":      {simulate.Config{Edges: []string{"http://y", ""}, Event: ev.Event, Key: ev.Key}, "Edges[1]"},
		"negative settle": {simulate.Config{URL: "http://x", Event: ev.Event, Key: ev.Key, Settle: -time.Second}, "Settle"},
		"good (control)":  {simulate.Config{URL: "http://x", Event: ev.Event, Key: ev.Key}, ""},
		"two edges":       {simulate.Config{Edges: []string{"http://x", "http://y"}, Event: ev.Event, Key: ev.Key}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := simulate.New(tc.cfg)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("New: %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

// TestSetupFailureIsAnError runs against an address where nothing listens:
// Run returns the set-up error and the failure is counted and reported.
func TestSetupFailureIsAnError(t *testing.T) {
	ev := testutil.NewEvent(t, "sim-nothing")
	var got []simulate.Failure
	s, err := simulate.New(simulate.Config{URL: "http://127.0.0.1:1", Event: ev.Event, Key: ev.Key,
		OnError: func(f simulate.Failure) { got = append(got, f) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "set-up") {
		t.Fatalf("Run against nothing: %v, want a set-up error", err)
	}
	sum := s.Summary()
	if sum.Errors != 1 || len(got) != 1 || got[0].Type != "transport" || got[0].Call != "PUT /v1/vendors/v-tacos" {
		t.Fatalf("errors %d, reported %+v", sum.Errors, got)
	}
	if err := s.Run(context.Background()); err == nil {
		t.Fatal("a second Run succeeded")
	}
}

// TestRunOnEdge plays a whole event on a real edge with short lots until
// every kind of answer has been seen, then checks the devices' counts
// against the edge's own report, log and occupancy.
func TestRunOnEdge(t *testing.T) {
	ev := testutil.NewEvent(t, "sim-market")
	ed, err := edge.Open(context.Background(), ev.EdgeConfig(t, "edge-1", ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ed.Close(context.Background()) })

	var first []simulate.Failure
	errs := make(chan simulate.Failure, 100)
	s, err := simulate.New(simulate.Config{URL: ed.URL(), Event: ev.Event, Key: ev.Key, Rate: 40, Seed: 7,
		LotDuration: 2 * time.Second, SoftClose: time.Second, OnError: func(f simulate.Failure) { errs <- f }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()

	complete := func(sum simulate.Summary) bool {
		r := sum.Scans.Rejected
		return sum.Orders > 10 && sum.Refunds > 0 && sum.SplitPayments > 0 && sum.ReceiptsFetched > 0 &&
			r[checkin.ReasonAlreadyInside] > 0 && r[checkin.ReasonExpired] > 0 && r[checkin.ReasonNotYetValid] > 0 &&
			r[checkin.ReasonInvalidSignature] > 0 && r[checkin.ReasonWrongDoor] > 0 && sum.Scans.Out > 0 &&
			sum.Bids.Closed >= 2 && sum.Watcher.Closed >= 1
	}
	deadline := time.Now().Add(60 * time.Second)
	for !complete(s.Summary()) {
		select {
		case f := <-errs:
			first = append(first, f)
		case err := <-ran:
			t.Fatalf("Run ended early: %v", err)
		case <-time.After(20 * time.Millisecond): // poll interval, bounded by deadline
		}
		if time.Now().After(deadline) {
			cancel()
			<-ran
			t.Fatalf("not every kind of answer within 60s: %+v", s.Summary())
		}
	}
	cancel()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	close(errs)
	for f := range errs {
		first = append(first, f)
	}
	sum := s.Summary()
	b, _ := json.Marshal(sum)
	t.Logf("summary: %s", b)
	if sum.Errors != 0 || len(first) != 0 {
		t.Fatalf("%d errors, first: %v", sum.Errors, first)
	}
	if sum.Revenue != sum.Settled-sum.Refunded || sum.Receipts != sum.Orders || sum.Change <= 0 {
		t.Fatalf("money does not add up: %+v", sum)
	}
	for _, slot := range []int{0, 1} {
		found := false
		for _, l := range sum.Lots {
			if l.Slot == slot && l.Closed {
				found = true
			}
		}
		if !found {
			t.Fatalf("no closed lot in slot %d: %+v", slot, sum.Lots)
		}
	}

	// The edge's own figures.
	org := ev.Token(t, auth.RoleOrganizer, "checker", time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	var rep salesreport.Report
	getJSON(t, ed.URL()+"/v1/reports/sales", org, &rep)
	tot := rep.Totals
	if int64(tot.Orders) != sum.Orders || int64(tot.Sold) != sum.Receipts || tot.Open != 0 ||
		tot.Refunds != sum.Refunded || tot.Net != sum.Revenue {
		t.Fatalf("edge report %+v disagrees with the devices' summary %+v", tot, sum)
	}
	var settled int64
	for _, v := range tot.Payments {
		settled += v
	}
	if settled != sum.Settled {
		t.Fatalf("edge report settles %d by method %v, the devices %d", settled, tot.Payments, sum.Settled)
	}
	if got := ed.Journal.Durable(); got != uint64(sum.Entries)+1 {
		t.Fatalf("the edge's log holds %d entries; the devices appended %d after the enrolment", got, sum.Entries)
	}
	var occ checkin.Occupancy
	getJSON(t, ed.URL()+"/v1/occupancy", org, &occ)
	if occ.Inside != sum.Occupancy.Inside || int64(occ.Inside) != sum.Scans.In-sum.Scans.Out {
		t.Fatalf("occupancy %+v, summary %+v, scans in %d out %d", occ, sum.Occupancy, sum.Scans.In, sum.Scans.Out)
	}
}

func getJSON(t *testing.T, url, token string, v any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s %v", url, resp.StatusCode, b, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}
