package simulate_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"canopy/internal/testutil"
	"canopy/simulate"
)

// TestLinkCutAndRestore: requests pass through a link, fail while it is
// cut (also on a kept-alive connection opened before the cut), and pass
// again once it is restored.
func TestLinkCutAndRestore(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hub") }))
	defer srv.Close()
	l, err := simulate.NewLink(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client := &http.Client{Timeout: 5 * time.Second}
	get := func() (string, error) {
		resp, err := client.Get(l.URL() + "/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if body, err := get(); err != nil || body != "hub" {
		t.Fatalf("through the link: %q, %v", body, err)
	}
	l.Cut()
	if !l.IsCut() || l.Cuts() != 1 {
		t.Fatalf("cut: IsCut %v, Cuts %d", l.IsCut(), l.Cuts())
	}
	for range 3 {
		if body, err := get(); err == nil {
			t.Fatalf("through a cut link: %q", body)
		}
	}
	l.Restore()
	if body, err := get(); err != nil || body != "hub" {
		t.Fatalf("through the restored link: %q, %v", body, err)
	}
	l.Cut()
	l.Cut()
	if l.Cuts() != 2 {
		t.Fatalf("Cuts %d after cutting a cut link again, want 2", l.Cuts())
	}
}

func TestLinkBadTarget(t *testing.T) {
	if _, err := simulate.NewLink("no-port"); err == nil {
		t.Fatal("NewLink accepted a target without a port")
	}
}

// TestInjectNeedsTwoEdges: with one edge there is no partition to exploit.
func TestInjectNeedsTwoEdges(t *testing.T) {
	ev := testutil.NewEvent(t, "sim-inject")
	s, err := simulate.New(simulate.Config{URL: "http://127.0.0.1:1", Event: ev.Event, Key: ev.Key})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.InjectConflicts(context.Background()); err == nil || !strings.Contains(err.Error(), "two edges") {
		t.Fatalf("InjectConflicts with one edge: %v", err)
	}
	if n := s.Summary().Errors; n != 0 {
		t.Fatalf("a refused injection counted %d errors", n)
	}
}
