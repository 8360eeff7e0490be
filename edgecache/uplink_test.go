package edgecache

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// refusing is a listener that closes connections from refused source
// addresses (and, when a source becomes refused, its open connections):
// an uplink that died, as seen from the origin.
type refusing struct {
	net.Listener
	mu      sync.Mutex
	refused map[string]bool
	open    map[net.Conn]string
}

func (l *refusing) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		l.mu.Lock()
		if l.refused[host] {
			l.mu.Unlock()
			c.Close()
			continue
		}
		l.open[c] = host
		l.mu.Unlock()
		return &trackedConn{Conn: c, l: l}, nil
	}
}

func (l *refusing) refuse(host string, on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refused[host] = on
	if !on {
		return
	}
	for c, h := range l.open {
		if h == host {
			c.Close()
			delete(l.open, c)
		}
	}
}

type trackedConn struct {
	net.Conn
	l *refusing
}

func (c *trackedConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.open, c.Conn)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// uplinkRig is a handler with uplinks 127.0.0.2 (named primary) and
// 127.0.0.3 in front of an origin that can refuse either.
type uplinkRig struct {
	hang    sync.Map      // source address → true: its requests hang
	release chan struct{} // closed at cleanup: hung requests end
	h       *Handler
	url     string
	rl      *refusing
	reg     *prometheus.Registry
}

func newUplinkRig(t *testing.T, probe, headerTimeout time.Duration) *uplinkRig {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rl := &refusing{Listener: ln, refused: map[string]bool{}, open: map[net.Conn]string{}}
	rig := &uplinkRig{release: make(chan struct{})}
	osrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		if _, ok := rig.hang.Load(host); ok {
			select {
			case <-rig.release:
			case <-r.Context().Done():
			}
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprint(w, "via "+host)
	}))
	osrv.Listener = rl
	osrv.Start()
	t.Cleanup(osrv.Close)

	st, err := OpenStore(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	ou, _ := url.Parse(osrv.URL)
	reg := prometheus.NewPedanticRegistry()
	h, err := New(Config{
		Name: "s", Origins: []*url.URL{ou}, Store: st, Metrics: NewMetrics(reg, st),
		DialTimeout: 200 * time.Millisecond, ResponseHeaderTimeout: headerTimeout,
		Uplinks:       []Uplink{{Name: "primary", Source: "127.0.0.2"}, {Source: "127.0.0.3"}},
		ProbeInterval: probe,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	t.Cleanup(func() { close(rig.release) }) // first: hung requests end
	rig.h, rig.url, rig.rl, rig.reg = h, srv.URL, rl, reg
	return rig
}

func (r *uplinkRig) metric(t *testing.T, name string) float64 {
	t.Helper()
	return gatherValues(t, r.reg)[name]
}

// The primary dies between probes: the first request through it fails
// over to the secondary at once (passive detection), and new requests
// skip the primary.
func TestUplinkPassiveFailover(t *testing.T) {
	r := newUplinkRig(t, time.Hour, 300*time.Millisecond)
	if _, body := get(t, r.url+"/a"); body != "via 127.0.0.2" {
		t.Fatalf("before failure: %q, want via the primary 127.0.0.2", body)
	}
	r.rl.refuse("127.0.0.2", true)
	start := time.Now()
	resp, body := get(t, r.url+"/a")
	if took := time.Since(start); resp.StatusCode != 200 || body != "via 127.0.0.3" || took > time.Second {
		t.Fatalf("after the primary died: %d %q after %v, want 200 via 127.0.0.3 within 1s", resp.StatusCode, body, took)
	}
	if got := r.h.UplinkHealth(); len(got) != 2 || got[0] || !got[1] {
		t.Fatalf("health after failover: %v, want [false true]", got)
	}
	if n := r.metric(t, "canopy_edgecache_uplink_failovers_total/primary"); n != 1 {
		t.Fatalf("uplink failovers from primary: %v, want 1", n)
	}
	if n := r.metric(t, "canopy_edgecache_uplink_up/primary"); n != 0 {
		t.Fatalf("canopy_edgecache_uplink_up{primary}: %v, want 0", n)
	}
	for range 5 {
		if _, body := get(t, r.url+"/b"); body != "via 127.0.0.3" {
			t.Fatalf("while the primary is down: %q", body)
		}
	}
	if n := r.metric(t, "canopy_edgecache_uplink_failovers_total/primary"); n != 1 {
		t.Fatalf("uplink failovers after the primary was marked down: %v, want still 1", n)
	}
}

// The probes mark a dead primary down and bring it back once it answers
// again; requests then return to it.
func TestUplinkProbeReturnsToPrimary(t *testing.T) {
	r := newUplinkRig(t, 50*time.Millisecond, 300*time.Millisecond)
	if _, body := get(t, r.url+"/a"); body != "via 127.0.0.2" {
		t.Fatalf("before failure: %q, want via the primary 127.0.0.2", body)
	}
	r.rl.refuse("127.0.0.2", true)
	waitFor(t, "the probe to mark the primary down", func() bool { return !r.h.UplinkHealth()[0] })
	if _, body := get(t, r.url+"/b"); body != "via 127.0.0.3" {
		t.Fatalf("while the primary is down: %q", body)
	}
	if n := r.metric(t, "canopy_edgecache_uplink_up/primary"); n != 0 {
		t.Fatalf("canopy_edgecache_uplink_up{primary}: %v, want 0", n)
	}
	r.rl.refuse("127.0.0.2", false)
	waitFor(t, "the probe to see the primary healthy", func() bool { return r.h.UplinkHealth()[0] })
	if _, body := get(t, r.url+"/c"); body != "via 127.0.0.2" {
		t.Fatalf("after recovery: %q, want back on the primary", body)
	}
	if n := r.metric(t, "canopy_edgecache_uplink_up/primary"); n != 1 {
		t.Fatalf("canopy_edgecache_uplink_up{primary}: %v, want 1", n)
	}
}

// With every uplink refused, the request fails (502) within its
// timeouts rather than hanging, and both are marked down.
func TestUplinkAllDown(t *testing.T) {
	r := newUplinkRig(t, time.Hour, 300*time.Millisecond)
	r.rl.refuse("127.0.0.2", true)
	r.rl.refuse("127.0.0.3", true)
	start := time.Now()
	resp, _ := get(t, r.url+"/a")
	if took := time.Since(start); resp.StatusCode != http.StatusBadGateway || took > time.Second {
		t.Fatalf("all uplinks down: %d after %v, want 502 within 1s", resp.StatusCode, took)
	}
	if got := r.h.UplinkHealth(); got[0] || got[1] {
		t.Fatalf("health: %v, want both down", got)
	}
}

// A primary that goes silent (accepts, never answers) while the response
// header timeout is long: a request stalled on it probes it out of turn
// and, the probe failing, moves on to the secondary within 1 s.
func TestUplinkStallProbe(t *testing.T) {
	r := newUplinkRig(t, time.Hour, 10*time.Second)
	if _, body := get(t, r.url+"/a"); body != "via 127.0.0.2" {
		t.Fatalf("before failure: %q", body)
	}
	r.hang.Store("127.0.0.2", true)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for i := range 4 { // stalled at once: they share one probe, and all move on
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(fmt.Sprintf("%s/stuck%d", r.url, i))
			if err != nil {
				errs <- err.Error()
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			// The stall probe moves requests on after ~0.8 s; the bound leaves
			// room for a loaded CI machine (bench cache-failover measures it).
			if took := time.Since(start); resp.StatusCode != 200 || string(b) != "via 127.0.0.3" || took > 2*time.Second {
				errs <- fmt.Sprintf("%d %q after %v", resp.StatusCode, b, took)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("a request that met the silent primary: %s, want 200 via 127.0.0.3 within 1s", e)
	}
	if r.h.UplinkHealth()[0] {
		t.Fatal("the silent primary is still marked up")
	}
	if _, body := get(t, r.url+"/b"); body != "via 127.0.0.3" {
		t.Fatalf("a new request: %q, want via 127.0.0.3", body)
	}
}

func TestUplinkConfigErrors(t *testing.T) {
	st, err := OpenStore(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	ou, _ := url.Parse("http://127.0.0.1:1")
	for _, tc := range []struct {
		ups  []Uplink
		want string
	}{
		{[]Uplink{{}}, "set source"},
		{[]Uplink{{Source: "not-an-ip"}}, "want an IP address"},
		{[]Uplink{{Source: "127.0.0.2", Interface: "lo"}}, "not both"},
		{[]Uplink{{Source: "127.0.0.2"}, {Source: "127.0.0.2"}}, "listed twice"},
	} {
		_, err := New(Config{Origins: []*url.URL{ou}, Store: st, Uplinks: tc.ups})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("uplinks %+v: error %v, want one containing %q", tc.ups, err, tc.want)
		}
	}
}

func TestUplinkInterfaceAddress(t *testing.T) {
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var lo string
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 {
			lo = i.Name
		}
	}
	if lo == "" {
		t.Fatal("no loopback interface on this machine")
	}
	a, err := Uplink{Interface: lo}.localAddr("127.0.0.1:80")
	if err != nil {
		t.Fatal(err)
	}
	if ip := a.(*net.TCPAddr).IP; !ip.IsLoopback() || ip.To4() == nil {
		t.Fatalf("interface %s address for an IPv4 origin: %v", lo, ip)
	}
	if _, err := (Uplink{Interface: "no-such-if0"}).localAddr("127.0.0.1:80"); err == nil {
		t.Fatal("an unknown interface gave an address")
	}
}
