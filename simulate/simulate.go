// Package simulate plays the devices of a whole event against its edges —
// tills of three vendors, two door scanners, bidders on two lots with their
// auctioneer, and a watcher of the live bid stream — through the device HTTP
// API only, with real device tokens and tickets signed by the event key,
// judging every answer it gets. With several edges it spreads the devices
// over them, can inject the conflicts a partition allows (InjectConflicts),
// and Link is the cuttable network link between an edge and its hub.
package simulate

import (
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"canopy/auth"
)

// DefaultRate is the target orders per second across all tills when
// Config.Rate is 0: enough to watch, not enough to flood a laptop.
const DefaultRate = 20

// requestTimeout bounds one request of a device.
const requestTimeout = 15 * time.Second

// Config says which edge to play against and how hard.
type Config struct {
	URL string // the edge's device API, e.g. http://127.0.0.1:8080
	// Edges, instead of URL, are the device APIs of several edges of the
	// event; the devices are spread over them. The first edge gets the
	// first vendor's tills, the first door and the whole auction (a lot's
	// bids stay on its home edge); the other vendors and doors go round the
	// other edges. Each door then scans its own share of the tickets, so
	// its answers do not depend on what another edge has synced yet.
	Edges []string
	Event *auth.Event        // the event the edge serves
	Key   ed25519.PrivateKey // the event key: signs the devices' tokens and the tickets
	// Rate is the target orders per second across all tills; 0:
	// DefaultRate. Doors scan at a quarter of it each (at least 1/s).
	Rate float64
	// Seed seeds the devices' choices; 0: a random seed.
	Seed uint64
	// Client makes the requests; nil: a client with keep-alive for the
	// devices' concurrency.
	Client *http.Client
	// OnError, if set, is called with the first occurrence of each kind of
	// error (an unexpected answer or a failed request). It may be called
	// from any device's goroutine.
	OnError func(Failure)
	// LotDuration is how long each lot runs before bids extend it; 0:
	// 20 s. SoftClose is the soft-close window and the extension a bid in
	// it earns, in whole seconds; 0: 5 s.
	LotDuration time.Duration
	SoftClose   time.Duration
	// Settle is how long the final checks give several edges to merge
	// their logs before their occupancy must match the doors' model; 0:
	// 30 s.
	Settle time.Duration
}

// Failure is one unexpected answer: what was asked, and what came back.
type Failure struct {
	Device string `json:"device"`
	Call   string `json:"call"`   // "POST /v1/orders"
	Status int    `json:"status"` // 0: no answer (transport error)
	Type   string `json:"type"`   // problem type, or a short kind of our own
	Detail string `json:"detail"`
}

func (f Failure) String() string {
	if f.Status == 0 {
		return fmt.Sprintf("%s: %s: %s: %s", f.Device, f.Call, f.Type, f.Detail)
	}
	return fmt.Sprintf("%s: %s → %d %s: %s", f.Device, f.Call, f.Status, f.Type, f.Detail)
}

// Sim is one simulation run. Make it with New, run it once with Run, and
// read Summary at any time (also concurrently with Run).
type Sim struct {
	cfg    Config
	urls   []string // the edges' device APIs; a call goes to urls[call.edge]
	client *http.Client
	run    string // letters that make this run's Idempotency-Keys unique
	seed   uint64

	organizer  string // token
	vendors    []vendor
	doors      []string
	doorTokens []string
	doorEdges  []int // the edge each door talks to
	auctioneer string
	paddles    []paddle
	tickets    *ticketBook
	lots       [2]*lotSlot
	lotLength  time.Duration
	softClose  time.Duration
	settle     time.Duration

	stats     stats
	ran       sync.Once
	injectMu  sync.Mutex
	injection int // InjectConflicts calls so far
}

type paddle struct {
	name, token string
	slot        int
}

// New checks cfg and prepares the run: device tokens and tickets are signed
// here, offline, with the event key.
func New(cfg Config) (*Sim, error) {
	switch {
	case cfg.URL == "" && len(cfg.Edges) == 0:
		return nil, errors.New("simulate: Config.URL (or Config.Edges) is required")
	case cfg.URL != "" && len(cfg.Edges) > 0:
		return nil, errors.New("simulate: give Config.URL or Config.Edges, not both")
	case cfg.Event == nil:
		return nil, errors.New("simulate: Config.Event is required")
	case len(cfg.Key) != ed25519.PrivateKeySize:
		return nil, errors.New("simulate: Config.Key must be the event's Ed25519 private key")
	case cfg.Rate < 0:
		return nil, fmt.Errorf("simulate: Config.Rate must not be negative, got %v", cfg.Rate)
	case cfg.Settle < 0:
		return nil, fmt.Errorf("simulate: Config.Settle must not be negative, got %v", cfg.Settle)
	case cfg.LotDuration < 0:
		return nil, fmt.Errorf("simulate: Config.LotDuration must not be negative, got %v", cfg.LotDuration)
	case cfg.SoftClose < 0 || cfg.SoftClose%time.Second != 0:
		return nil, fmt.Errorf("simulate: Config.SoftClose must be whole seconds, not negative, got %v", cfg.SoftClose)
	}
	if !cfg.Event.PublicKey().Equal(cfg.Key.Public()) {
		return nil, errors.New("simulate: Config.Key is not the key of Config.Event")
	}
	if cfg.Rate == 0 {
		cfg.Rate = DefaultRate
	}
	s := &Sim{cfg: cfg, client: cfg.Client, seed: cfg.Seed, lotLength: cfg.LotDuration}
	s.cfg.URL = strings.TrimRight(cfg.URL, "/")
	if s.cfg.URL != "" {
		s.urls = []string{s.cfg.URL}
	}
	for i, u := range cfg.Edges {
		if u == "" {
			return nil, fmt.Errorf("simulate: Config.Edges[%d] is empty", i)
		}
		s.urls = append(s.urls, strings.TrimRight(u, "/"))
	}
	if s.client == nil {
		s.client = &http.Client{Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConns:        64,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     30 * time.Second,
		}}
	}
	if s.seed == 0 {
		var b [8]byte
		if _, err := crand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("simulate: seed: %w", err)
		}
		s.seed = binary.LittleEndian.Uint64(b[:]) | 1
	}
	if s.lotLength == 0 {
		s.lotLength = 20 * time.Second
	}
	if s.settle = cfg.Settle; s.settle == 0 {
		s.settle = 30 * time.Second
	}
	if s.softClose = cfg.SoftClose; s.softClose == 0 {
		s.softClose = 5 * time.Second
	}
	// The run's keys are fresh even with a fixed seed: Idempotency-Keys
	// are kept for the event's lifetime.
	var run [10]byte
	if _, err := crand.Read(run[:]); err != nil {
		return nil, fmt.Errorf("simulate: run id: %w", err)
	}
	for i := range run {
		run[i] = 'a' + run[i]%26
	}
	s.run = string(run[:])
	s.stats.init(cfg.Event.Currency)
	if err := s.issue(); err != nil {
		return nil, err
	}
	return s, nil
}

// rng returns a generator for one device, derived from the run's seed.
func (s *Sim) rng(device uint64) *rand.Rand {
	return rand.New(rand.NewPCG(s.seed, device*0x9e3779b97f4a7c15+1))
}

// Seed is the seed the run's choices come from.
func (s *Sim) Seed() uint64 { return s.seed }

// Run sets the event up through the API (vendors, catalogs, stock) and then
// plays every device until ctx ends. When it ends, each device finishes
// what it is doing (a sale is paid, a scan answered) and stops, so the
// counts match what the edge recorded. Run returns an error only if the
// set-up failed; unexpected answers while playing are counted in Summary.
// A Sim runs once.
func (s *Sim) Run(ctx context.Context) error {
	err := errors.New("simulate: a Sim runs only once")
	s.ran.Do(func() { err = s.run1(ctx) })
	return err
}

func (s *Sim) run1(ctx context.Context) error {
	s.stats.begin(time.Now())
	if err := s.setup(ctx); err != nil {
		s.stats.finish(time.Now())
		return err
	}
	var wg sync.WaitGroup
	spawn := func(f func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	tills := 0
	for vi := range s.vendors {
		tills += len(s.vendors[vi].tills)
	}
	dev := uint64(100)
	for vi := range s.vendors {
		for ti := range s.vendors[vi].tills {
			s.vendors[vi].tills[ti].rate = s.cfg.Rate / float64(tills)
			dev++
			d := dev
			spawn(func(ctx context.Context) { s.playTill(ctx, vi, ti, d) })
		}
	}
	for di := range s.doors {
		spawn(func(ctx context.Context) { s.playDoor(ctx, di, uint64(200+di)) })
	}
	for slot := range s.lots {
		spawn(func(ctx context.Context) { s.playAuctioneer(ctx, slot) })
	}
	for pi := range s.paddles {
		spawn(func(ctx context.Context) { s.playBidder(ctx, pi, uint64(300+pi)) })
	}
	spawn(func(ctx context.Context) { s.watch(ctx, 0) })
	spawn(s.monitor)
	wg.Wait()
	s.finalChecks()
	s.stats.finish(time.Now())
	return nil
}

// Organizer returns the organizer token the simulation set the event up
// with.
func (s *Sim) Organizer() string { return s.organizer }

// pace returns a ticker for rate actions per second (at least one a minute).
func pace(rate float64) *time.Ticker {
	if rate <= 0 {
		rate = 1.0 / 60
	}
	return time.NewTicker(time.Duration(float64(time.Second) / rate))
}

// done reports whether ctx has ended, without blocking.
func done(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return true
	default:
		return false
	}
}
