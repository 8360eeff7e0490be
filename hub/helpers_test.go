package hub_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"canopy/auth"
	"canopy/config"
	"canopy/edge"
	"canopy/hub"
	"canopy/internal/testutil"
	"canopy/store"
	"canopy/viewset"
)

// enrolHub enrols a hub node for ev and writes it to a new directory.
func enrolHub(t *testing.T, ev *testutil.Event, name string) string {
	t.Helper()
	return enrolNode(t, ev, name, auth.NodeHub)
}

func enrolNode(t *testing.T, ev *testutil.Event, name, role string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "node")
	key, tok, err := auth.EnrollNode(ev.Key, ev.Event, name, role, time.Now().Add(-time.Hour), time.Now().Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := auth.WriteNode(dir, key, tok); err != nil {
		t.Fatal(err)
	}
	return dir
}

// hubDir makes a hub data directory serving the events, each with its own
// newly enrolled hub node named name.
func hubDir(t *testing.T, name string, evs ...*testutil.Event) string {
	t.Helper()
	dir := t.TempDir()
	for _, ev := range evs {
		if _, err := hub.AddEvent(dir, ev.Dir, enrolHub(t, ev, name), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func openHub(t *testing.T, cfg hub.Config) *hub.Hub {
	t.Helper()
	h, err := hub.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func closeHub(t *testing.T, h *hub.Hub) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := h.Close(ctx); err != nil {
		t.Errorf("close hub: %v", err)
	}
}

// openEdge opens an edge of ev syncing with the hub URLs.
func openEdge(t *testing.T, ev *testutil.Event, name string, hubs ...string) *edge.Edge {
	t.Helper()
	cfg := ev.EdgeConfig(t, name, "")
	cfg.Sync.Hubs = hubs
	return openEdgeConfig(t, cfg)
}

func openEdgeConfig(t *testing.T, cfg config.Config) *edge.Edge {
	t.Helper()
	e, err := edge.Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close(context.Background()) })
	return e
}

// call sends a device request to an edge and checks the status.
func call(t *testing.T, base, token, method, path, idemKey string, body any, want int) []byte {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s%s: %d %s, want %d", method, base, path, resp.StatusCode, b, want)
	}
	return b
}

// postNote writes a note on an edge, for use outside the test goroutine.
func postNote(base, token, key string) error {
	req, err := http.NewRequest("POST", base+"/v1/log/notes", strings.NewReader(fmt.Sprintf(`{"text":%q}`, "note "+key)))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("note %s: %d %s", key, resp.StatusCode, b)
	}
	return nil
}

func note(t *testing.T, e *edge.Edge, token, key string) {
	t.Helper()
	call(t, e.URL(), token, "POST", "/v1/log/notes", key, map[string]string{"text": "note " + key}, http.StatusCreated)
}

// sell sets up a vendor and a SKU (once per prefix) and creates, pays an order.
func sell(t *testing.T, e *edge.Edge, token, prefix string, n int) {
	t.Helper()
	active := true
	call(t, e.URL(), token, "PUT", "/v1/vendors/v-"+prefix, prefix+"-vendor",
		map[string]any{"name": "Stall " + prefix, "active": &active}, http.StatusOK)
	call(t, e.URL(), token, "PUT", "/v1/catalog/sku-"+prefix, prefix+"-sku",
		map[string]any{"vendor": "v-" + prefix, "name": "Taco " + prefix, "price": 450, "tax_rate": 700,
			"tax_inclusive": true, "active": &active}, http.StatusOK)
	for i := 0; i < n; i++ {
		b := call(t, e.URL(), token, "POST", "/v1/orders", fmt.Sprintf("%s-order-%d", prefix, i),
			map[string]any{"vendor": "v-" + prefix, "lines": []map[string]any{{"sku": "sku-" + prefix, "qty": 2}}}, http.StatusCreated)
		var o struct {
			Order struct {
				ID string `json:"id"`
			} `json:"order"`
		}
		if err := json.Unmarshal(b, &o); err != nil || o.Order.ID == "" {
			t.Fatalf("order response %s: %v", b, err)
		}
		call(t, e.URL(), token, "POST", "/v1/orders/"+o.Order.ID+"/payments", fmt.Sprintf("%s-pay-%d", prefix, i),
			map[string]any{"method": "cash", "amount": 900}, http.StatusCreated)
	}
}

// same reports whether two stores hold the same entries of event and the
// same views rebuilt from them.
func same(ctx context.Context, a, b store.Store, event string) (bool, string) {
	va, err := a.Vector(ctx, event)
	if err != nil {
		return false, err.Error()
	}
	vb, err := b.Vector(ctx, event)
	if err != nil {
		return false, err.Error()
	}
	if fmt.Sprint(va) != fmt.Sprint(vb) {
		return false, fmt.Sprintf("vectors %v vs %v", va, vb)
	}
	ra, err := viewset.All().Rebuild(ctx, a, event)
	if err != nil {
		return false, err.Error()
	}
	rb, err := viewset.All().Rebuild(ctx, b, event)
	if err != nil {
		return false, err.Error()
	}
	if len(ra) != len(rb) {
		return false, fmt.Sprintf("%d vs %d view rows", len(ra), len(rb))
	}
	for i := range ra {
		if ra[i].View != rb[i].View || ra[i].Key != rb[i].Key || !bytes.Equal(ra[i].Value, rb[i].Value) {
			return false, "view " + ra[i].View + "/" + ra[i].Key + " differs"
		}
	}
	return true, ""
}

// waitSame polls until every store holds what the first holds.
func waitSame(t *testing.T, event string, within time.Duration, stores ...store.Store) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		why := ""
		for _, s := range stores[1:] {
			if ok, w := same(context.Background(), stores[0], s, event); !ok {
				why = w
				break
			}
		}
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes did not converge within %s: %s", within, why)
		}
		time.Sleep(10 * time.Millisecond) // polling for convergence
	}
}

// get fetches a URL and returns status, content type and body.
func get(t *testing.T, url string) (int, string, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

// entries counts the entries of event a store holds, all authors together.
func entries(t *testing.T, s store.Store, event string) uint64 {
	t.Helper()
	v, err := s.Vector(context.Background(), event)
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, seq := range v {
		n += seq
	}
	return n
}
