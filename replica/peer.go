package replica

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
)

// Peer keeps a node in sync with another node (an edge on the venue LAN or
// a hub): it pushes what the other lacks as this node's log grows, follows
// the other's stream of what this node lacks, and reconnects with jittered
// backoff capped at a few seconds. URLs are tried in order, moving to the
// next after a failure.
type Peer struct {
	URLs      []string
	Node      *Node
	Key       ed25519.PrivateKey // this node's key
	Enrolment string             // this node's enrolment token
	HTTP      *http.Client       // nil: a client without an overall timeout (streams are long)
	// PushBatch caps the entries one push request carries (default 5,000).
	PushBatch int

	mu     sync.Mutex
	status PeerStatus
	theirs Vector // the peer's vector, as last learned
}

// PeerStatus is what a node knows of a peer, for metrics and `canopy status`.
type PeerStatus struct {
	URL string `json:"url"`
	// Node is the peer's node id, from its vector ("" until learned).
	Node        string    `json:"node,omitempty"`
	Connected   bool      `json:"connected"`
	LastContact time.Time `json:"last_contact"`
	LastError   string    `json:"last_error,omitempty"`
	Sent        int       `json:"sent"`
	Received    int       `json:"received"`
	// Backlog is how many entries this node held that the peer lacked, by
	// the last vectors exchanged.
	Backlog int `json:"backlog"`
}

// Behind returns how many entries the peer held, by the last vector it
// sent, that this node does not hold yet: what a rehydrating node still
// has to pull.
func (p *Peer) Behind(ctx context.Context) (int, error) {
	p.mu.Lock()
	theirs := p.theirs
	p.mu.Unlock()
	if theirs == nil {
		return 0, nil
	}
	held, err := p.Node.Store.Vector(ctx, p.Node.Event.Slug)
	if err != nil {
		return 0, err
	}
	return backlogOf(theirs, held), nil
}

// Status returns the peer's status.
func (p *Peer) Status() PeerStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

func (p *Peer) note(f func(*PeerStatus)) {
	p.mu.Lock()
	f(&p.status)
	p.mu.Unlock()
}

// backoff bounds between reconnection attempts: jittered, doubling from
// backoffMin, capped at backoffMax so a healed link is used again within
// about a second.
const (
	backoffMin = 100 * time.Millisecond
	backoffMax = time.Second
)

// Run syncs until ctx ends.
func (p *Peer) Run(ctx context.Context) {
	if p.HTTP == nil {
		p.HTTP = &http.Client{Transport: &http.Transport{
			ResponseHeaderTimeout: 10 * time.Second,
			IdleConnTimeout:       90 * time.Second,
		}}
	}
	if p.PushBatch <= 0 {
		p.PushBatch = 5000
	}
	p.Node.addPeer(p)
	wait := backoffMin
	for i := 0; ctx.Err() == nil; i++ {
		url := strings.TrimRight(p.URLs[i%len(p.URLs)], "/")
		p.note(func(s *PeerStatus) { s.URL = url })
		start := time.Now()
		err := p.session(ctx, url)
		p.note(func(s *PeerStatus) {
			s.Connected = false
			if err != nil {
				s.LastError = err.Error()
			}
		})
		p.Node.metrics().connected.WithLabelValues(url).Set(0)
		if ctx.Err() != nil {
			return
		}
		p.Node.Logger.Debug("sync: session ended", "peer", url, "err", err)
		if time.Since(start) > 5*time.Second {
			wait = backoffMin
		}
		jitter := time.Duration(rand.Int64N(int64(wait)/2 + 1))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait/2 + jitter):
		}
		wait = min(wait*2, backoffMax)
	}
}

// session pushes and pulls until either direction fails.
func (p *Peer) session(ctx context.Context, url string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() { errc <- p.pushLoop(ctx, url) }()
	go func() { errc <- p.pullLoop(ctx, url) }()
	err := <-errc
	cancel()
	<-errc
	return err
}

func (p *Peer) do(ctx context.Context, method, url string, body []byte, bodyHash [32]byte, ctype string) (*http.Response, error) {
	return p.doEncoded(ctx, method, url, body, bodyHash, ctype, "", "")
}

// doEncoded is do with a Content-Encoding for the body (push streams are
// gzip-compressed batches) and an Accept-Encoding for the response (pull
// streams are decompressed by pullLoop, not by the transport).
func (p *Peer) doEncoded(ctx context.Context, method, url string, body []byte, bodyHash [32]byte, ctype, encoding, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	if accept != "" {
		req.Header.Set("Accept-Encoding", accept)
	}
	sign(req, p.Key, p.Enrolment, bodyHash)
	resp, err := p.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, strings.TrimSpace(string(b)))
	}
	now := time.Now()
	p.note(func(s *PeerStatus) { s.Connected, s.LastContact = true, now })
	m := p.Node.metrics()
	m.connected.WithLabelValues(peerLabel(url)).Set(1)
	m.lastContact.WithLabelValues(peerLabel(url)).Set(float64(now.UnixNano()) / 1e9)
	return resp, nil
}

// pushLoop learns what the peer holds and sends what it lacks, again every
// time this node commits something new.
func (p *Peer) pushLoop(ctx context.Context, url string) error {
	resp, err := p.do(ctx, http.MethodGet, url+"/v1/sync/vector", nil, emptyHash, "")
	if err != nil {
		return err
	}
	var vr VectorResponse
	err = json.NewDecoder(resp.Body).Decode(&vr)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("vector of %s: %w", url, err)
	}
	if vr.Protocol != ProtocolVersion {
		return fmt.Errorf("%w: %s speaks %d", ErrVersion, url, vr.Protocol)
	}
	theirs := vr.Vector
	if theirs == nil {
		theirs = Vector{}
	}
	cps := newCPTracker(p.Node)
	defer cps.stop()
	p.note(func(s *PeerStatus) { s.Node = vr.Node.String() })
	for {
		if err := p.noteBacklog(ctx, url, theirs); err != nil {
			return err
		}
		changed, cpChanged := p.Node.Journal.Changed(), p.Node.cpChanged()
		var buf bytes.Buffer
		sw, err := newWriter(&buf)
		if err != nil {
			return err
		}
		sent := Vector{}
		for k, v := range theirs {
			sent[k] = v
		}
		n, err := p.Node.sendMissing(ctx, sw, sent, p.PushBatch, cps)
		if err != nil {
			return err
		}
		k, err := cps.send(ctx, sw, theirs, sent)
		if err != nil {
			return err
		}
		if n > 0 || k > 0 {
			if err := sw.end(); err != nil {
				return err
			}
			if err := sw.flush(); err != nil {
				return err
			}
			var zbuf bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&zbuf, gzip.BestSpeed)
			if _, err := zw.Write(buf.Bytes()); err != nil {
				return err
			}
			if err := zw.Close(); err != nil {
				return err
			}
			resp, err := p.doEncoded(ctx, http.MethodPost, url+"/v1/sync/push", zbuf.Bytes(), emptyHash, ContentType, "gzip", "")
			if err != nil {
				return err
			}
			var pr PushResponse
			err = json.NewDecoder(resp.Body).Decode(&pr)
			resp.Body.Close()
			if err != nil {
				return fmt.Errorf("push to %s: %w", url, err)
			}
			p.note(func(s *PeerStatus) { s.Sent += pr.Added })
			m := p.Node.metrics()
			m.sent.WithLabelValues(url).Add(float64(pr.Added))
			if pr.Refused != "" {
				reason := pr.RefusedReason
				if reason == "" {
					reason = RefusedOther
				}
				m.refused.WithLabelValues(url, reason, sideSent).Inc()
				return fmt.Errorf("%s refused entries: %s", url, pr.Refused)
			}
			theirs = pr.Vector
			if n >= p.PushBatch {
				continue // more to send at once
			}
		}
		if !cps.wait(ctx, nil, changed, cpChanged, p.Node.Heartbeat) {
			return ctx.Err()
		}
	}
}

// pullLoop follows the peer's stream of what this node lacks.
func (p *Peer) pullLoop(ctx context.Context, url string) error {
	v, err := p.Node.Store.Vector(ctx, p.Node.Event.Slug)
	if err != nil {
		return err
	}
	body, err := json.Marshal(PullRequest{Protocol: ProtocolVersion, Vector: v, Follow: true})
	if err != nil {
		return err
	}
	resp, err := p.doEncoded(ctx, http.MethodPost, url+"/v1/sync/pull", body, sha256.Sum256(body), "application/json", "", "gzip")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var stream io.Reader = resp.Body
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			return fmt.Errorf("pull from %s: gzip stream: %w", url, err)
		}
		defer zr.Close()
		stream = zr
	}
	rd, err := newReader(stream)
	if err != nil {
		return err
	}
	_, err = p.Node.ingestStream(ctx, rd, url, func(k int) {
		p.note(func(s *PeerStatus) { s.Received += k })
	})
	if err == nil {
		err = fmt.Errorf("stream from %s ended", url)
	}
	return err
}

// noteBacklog records how many held entries the peer lacks by its vector.
func (p *Peer) noteBacklog(ctx context.Context, url string, theirs Vector) error {
	held, err := p.Node.Store.Vector(ctx, p.Node.Event.Slug)
	if err != nil {
		return err
	}
	n := backlogOf(held, theirs)
	p.note(func(s *PeerStatus) { s.Backlog = n })
	p.mu.Lock()
	p.theirs = theirs
	p.mu.Unlock()
	p.Node.metrics().backlog.WithLabelValues(url).Set(float64(n))
	return nil
}

// peerLabel is a peer's base URL: a request URL up to "/v1/sync/".
func peerLabel(url string) string {
	if i := strings.Index(url, "/v1/sync/"); i >= 0 {
		return url[:i]
	}
	return url
}
