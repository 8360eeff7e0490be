package edgecache

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Uplink is one outbound path to the origins: a source address to dial
// from, or a network interface whose first address of the origin's
// family is used (looked up at each dial, so a renewed DHCP lease is
// followed).
type Uplink struct {
	// Name labels the uplink in metrics (default: Source or Interface).
	Name      string
	Source    string
	Interface string
}

// DefaultProbeInterval is how often each uplink is probed when
// Config.ProbeInterval is zero.
const DefaultProbeInterval = 2 * time.Second

func (u Uplink) label() string {
	switch {
	case u.Name != "":
		return u.Name
	case u.Source != "":
		return u.Source
	}
	return u.Interface
}

func (u Uplink) check() error {
	switch {
	case u.Source != "" && u.Interface != "":
		return fmt.Errorf("edgecache: uplink %q: set source or interface, not both", u.label())
	case u.Source == "" && u.Interface == "":
		return errors.New("edgecache: uplink: set source (an IP address) or interface")
	case u.Source != "":
		if _, err := netip.ParseAddr(u.Source); err != nil {
			return fmt.Errorf("edgecache: uplink source %q: want an IP address", u.Source)
		}
	}
	return nil
}

// localAddr is the address to dial from for a connection to network
// address addr (whose host is an IP or a name).
func (u Uplink) localAddr(addr string) (net.Addr, error) {
	if u.Source != "" {
		ip, _ := netip.ParseAddr(u.Source)
		return &net.TCPAddr{IP: ip.AsSlice()}, nil
	}
	ifi, err := net.InterfaceByName(u.Interface)
	if err != nil {
		return nil, fmt.Errorf("uplink interface %q: %w", u.Interface, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, fmt.Errorf("uplink interface %q: %w", u.Interface, err)
	}
	want6 := false
	if host, _, err := net.SplitHostPort(addr); err == nil {
		if ip, err := netip.ParseAddr(host); err == nil {
			want6 = ip.Is6() && !ip.Is4In6()
		}
	}
	for _, a := range addrs {
		pfx, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		ip := pfx.Addr()
		if ip.Is6() == want6 && !ip.IsLinkLocalUnicast() {
			return &net.TCPAddr{IP: ip.AsSlice()}, nil
		}
	}
	return nil, fmt.Errorf("uplink interface %q has no usable address", u.Interface)
}

// uplinkState is one uplink's transport and health.
type uplinkState struct {
	u         Uplink
	rt        *http.Transport
	up        prometheus.Gauge
	failovers prometheus.Counter
	healthy   bool // guarded by uplinks.mu

	stallMu  sync.Mutex // one stall probe at a time; others wait for it
	stallEnd time.Time  // when the last stall probe ended
}

// stallAfter is how long a request may wait on an uplink before that
// uplink is probed out of turn, so a path that went silent (blackholed,
// or accepting and never answering) is abandoned by new requests within
// about 1 s instead of after response_header_timeout.
const stallAfter = 400 * time.Millisecond

// uplinks is a site's ordered uplinks: requests use the first healthy
// one; an uplink is marked down by a connection error or timeout through
// it (passive) or a failed probe, and up again by a successful probe.
type uplinks struct {
	list  []*uplinkState
	mu    sync.Mutex
	probe *http.Request // HEAD of the first origin
	every time.Duration
	stop  chan struct{}
	done  chan struct{}
}

// newTransport is an origin transport with the handler's tight timeouts,
// dialing from local (nil: any address).
func newTransport(cfg Config, local func(addr string) (net.Addr, error)) *http.Transport {
	d := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	dial := d.DialContext
	if local != nil {
		dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			la, err := local(addr)
			if err != nil {
				return nil, err
			}
			dd := *d
			dd.LocalAddr = la
			return dd.DialContext(ctx, network, addr)
		}
	}
	return &http.Transport{
		Proxy:                  nil,
		DialContext:            dial,
		TLSHandshakeTimeout:    cfg.DialTimeout * 2,
		ResponseHeaderTimeout:  cfg.ResponseHeaderTimeout,
		MaxIdleConnsPerHost:    64,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
}

func newUplinks(cfg Config) (*uplinks, error) {
	us := &uplinks{every: cfg.ProbeInterval, stop: make(chan struct{}), done: make(chan struct{})}
	if us.every <= 0 {
		us.every = DefaultProbeInterval
	}
	seen := map[string]bool{}
	for _, u := range cfg.Uplinks {
		if err := u.check(); err != nil {
			return nil, err
		}
		if seen[u.label()] {
			return nil, fmt.Errorf("edgecache: uplink %q listed twice", u.label())
		}
		seen[u.label()] = true
		st := &uplinkState{
			u:         u,
			rt:        newTransport(cfg, u.localAddr),
			up:        cfg.Metrics.uplinkUp.WithLabelValues(cfg.Name, u.label()),
			failovers: cfg.Metrics.uplinkFailovers.WithLabelValues(cfg.Name, u.label()),
			healthy:   true,
		}
		st.up.Set(1)
		us.list = append(us.list, st)
	}
	req, err := http.NewRequest(http.MethodHead, cfg.Origins[0].Scheme+"://"+cfg.Origins[0].Host+"/", nil)
	if err != nil {
		return nil, fmt.Errorf("edgecache: probe request: %w", err)
	}
	us.probe = req
	return us, nil
}

// order lists the uplinks to try: healthy ones in configured order, then
// the rest (so a request still has a path when every probe failed).
func (us *uplinks) order() []*uplinkState {
	us.mu.Lock()
	defer us.mu.Unlock()
	var up, down []*uplinkState
	for _, s := range us.list {
		if s.healthy {
			up = append(up, s)
		} else {
			down = append(down, s)
		}
	}
	return append(up, down...)
}

// set records an uplink's health; it reports whether it changed.
func (us *uplinks) set(s *uplinkState, healthy bool) bool {
	us.mu.Lock()
	changed := s.healthy != healthy
	s.healthy = healthy
	us.mu.Unlock()
	if healthy {
		s.up.Set(1)
	} else {
		s.up.Set(0)
		if changed {
			// Pooled connections through a failed path are not reused.
			s.rt.CloseIdleConnections()
		}
	}
	return changed
}

// healthy reports each uplink's health, in configured order.
func (us *uplinks) healthy() []bool {
	us.mu.Lock()
	defer us.mu.Unlock()
	out := make([]bool, len(us.list))
	for i, s := range us.list {
		out[i] = s.healthy
	}
	return out
}

// run probes every uplink each interval until close.
func (us *uplinks) run() {
	defer close(us.done)
	t := time.NewTicker(us.every)
	defer t.Stop()
	for {
		select {
		case <-us.stop:
			return
		case <-t.C:
		}
		var wg sync.WaitGroup
		for _, s := range us.list {
			wg.Add(1)
			go func() {
				defer wg.Done()
				us.set(s, us.probeOnce(s, min(us.every, time.Second)))
			}()
		}
		wg.Wait()
	}
}

// errStalled ends an attempt through an uplink that a stall probe found
// down, so the request moves on to the next uplink.
var errStalled = errors.New("edgecache: uplink stalled and failed its probe")

// roundTrip sends out through s. When it waits stallAfter, s is probed
// out of turn; if the probe fails, a retryable attempt is abandoned (and
// the caller moves on to the next uplink) instead of waiting out the
// response header timeout.
func (us *uplinks) roundTrip(s *uplinkState, out *http.Request, retryable bool) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(out.Context())
	var mu sync.Mutex
	done := false
	stall := time.AfterFunc(stallAfter, func() {
		us.stalled(s)
		mu.Lock()
		defer mu.Unlock()
		if !done && retryable && !us.isHealthy(s) {
			cancel(errStalled)
		}
	})
	resp, err := s.rt.RoundTrip(out.WithContext(ctx))
	stall.Stop()
	mu.Lock()
	done = true
	mu.Unlock()
	if context.Cause(ctx) == errStalled {
		if err == nil {
			resp.Body.Close()
		}
		return nil, errStalled
	}
	if err != nil {
		cancel(err)
	}
	return resp, err
}

func (us *uplinks) isHealthy(s *uplinkState) bool {
	us.mu.Lock()
	defer us.mu.Unlock()
	return s.healthy
}

// stalled probes s now with a timeout of stallAfter (a request through it
// has waited stallAfter), so a silent path is marked down 2×stallAfter
// after a request met it. Requests stalled at once share one probe, and
// one that ended less than stallAfter ago is not repeated.
func (us *uplinks) stalled(s *uplinkState) {
	s.stallMu.Lock()
	defer s.stallMu.Unlock()
	if time.Since(s.stallEnd) < stallAfter {
		return
	}
	us.set(s, us.probeOnce(s, stallAfter))
	s.stallEnd = time.Now()
}

// probeOnce sends the probe through s: any HTTP answer below 500 on a new
// connection counts as healthy.
func (us *uplinks) probeOnce(s *uplinkState, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() {
		select {
		case <-us.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	req := us.probe.Clone(ctx)
	req.Close = true
	resp, err := s.rt.RoundTrip(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode < 500
}

func (us *uplinks) close() {
	select {
	case <-us.stop:
	default:
		close(us.stop)
	}
	<-us.done
	for _, s := range us.list {
		s.rt.CloseIdleConnections()
	}
}
