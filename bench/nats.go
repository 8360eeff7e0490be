package bench

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The NATS side of the sync comparison: what a user might pick instead of
// Canopy's sync for edge-to-cloud store-and-forward. The configuration is
// committed in testdata/ and read from there at build time.
var (
	//go:embed testdata/nats-hub.conf
	natsHubConf string
	//go:embed testdata/nats-edge.conf
	natsEdgeConf string
	//go:embed testdata/nats-streams.json
	natsStreamsJSON []byte
)

const (
	// natsSubject is the subject the edge's messages are published on.
	natsSubject = "canopy.bench.note"
	// natsWindow is how many publications may await acknowledgement.
	natsWindow = 1024
)

// natsStreams are the edge stream and the hub stream that sources it.
type natsStreams struct {
	Edge jetstream.StreamConfig `json:"edge"`
	Hub  jetstream.StreamConfig `json:"hub"`
}

// natsRig is an embedded JetStream hub and a leaf-node edge connected to
// it, each with its store in its own directory.
type natsRig struct {
	dir      string
	leafPort int // the hub's leaf-node port, kept across a hub restart
	link     *countingProxy
	streams  natsStreams

	hub, edge         *server.Server
	hubConn, edgeConn *nats.Conn
	hubJS, edgeJS     jetstream.JetStream
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (r *natsRig) hubOptions() (*server.Options, error) {
	o := &server.Options{}
	if err := o.ProcessConfigString(natsHubConf); err != nil {
		return nil, fmt.Errorf("nats hub config: %w", err)
	}
	o.StoreDir = filepath.Join(r.dir, "hub")
	o.LeafNode.Port = r.leafPort
	o.NoLog, o.NoSigs = true, true
	return o, nil
}

func (r *natsRig) edgeOptions() (*server.Options, error) {
	o := &server.Options{}
	if err := o.ProcessConfigString(natsEdgeConf); err != nil {
		return nil, fmt.Errorf("nats edge config: %w", err)
	}
	if len(o.LeafNode.Remotes) != 1 {
		return nil, fmt.Errorf("nats edge config: want one leaf-node remote, have %d", len(o.LeafNode.Remotes))
	}
	u, err := url.Parse("nats-leaf://" + r.link.ln.Addr().String())
	if err != nil {
		return nil, err
	}
	o.LeafNode.Remotes[0].URLs = []*url.URL{u}
	o.StoreDir = filepath.Join(r.dir, "edge")
	o.NoLog, o.NoSigs = true, true
	return o, nil
}

// startServer starts an embedded server and connects a JetStream client to
// it.
func startServer(o *server.Options) (*server.Server, *nats.Conn, jetstream.JetStream, error) {
	s, err := server.NewServer(o)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("nats server %s: %w", o.ServerName, err)
	}
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, nil, nil, fmt.Errorf("nats server %s did not become ready in 30 s", o.ServerName)
	}
	nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1))
	if err != nil {
		s.Shutdown()
		return nil, nil, nil, fmt.Errorf("connect to nats server %s: %w", o.ServerName, err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(natsWindow))
	if err != nil {
		nc.Close()
		s.Shutdown()
		return nil, nil, nil, err
	}
	return s, nc, js, nil
}

func newNATSRig(root string) (*natsRig, error) {
	dir, err := os.MkdirTemp(root, "canopy-bench-nats-")
	if err != nil {
		return nil, err
	}
	r := &natsRig{dir: dir}
	if err := json.Unmarshal(natsStreamsJSON, &r.streams); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("nats-streams.json: %w", err)
	}
	if r.leafPort, err = freePort(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if r.link, err = newCountingProxy("127.0.0.1:" + strconv.Itoa(r.leafPort)); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := r.startHub(); err != nil {
		r.close()
		return nil, err
	}
	eo, err := r.edgeOptions()
	if err != nil {
		r.close()
		return nil, err
	}
	if r.edge, r.edgeConn, r.edgeJS, err = startServer(eo); err != nil {
		r.close()
		return nil, err
	}
	if err := waitFor(30*time.Second, "the leaf-node connection", func() (bool, error) {
		return r.hub.NumLeafNodes() == 1 && r.edge.NumLeafNodes() == 1, nil
	}); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *natsRig) startHub() error {
	ho, err := r.hubOptions()
	if err != nil {
		return err
	}
	r.hub, r.hubConn, r.hubJS, err = startServer(ho)
	return err
}

func (r *natsRig) stopHub() {
	if r.hubConn != nil {
		r.hubConn.Close()
		r.hubConn = nil
	}
	if r.hub != nil {
		r.hub.Shutdown()
		r.hub.WaitForShutdown()
		r.hub = nil
	}
}

// close stops both servers and removes their stores.
func (r *natsRig) close() {
	r.stopHub()
	if r.edgeConn != nil {
		r.edgeConn.Close()
	}
	if r.edge != nil {
		r.edge.Shutdown()
		r.edge.WaitForShutdown()
	}
	r.link.close()
	os.RemoveAll(r.dir)
}

// publish writes msgs to the edge stream, waiting for every
// acknowledgement (each one after its fsync). It publishes in windows of
// natsWindow so the client never stalls on too many outstanding
// acknowledgements.
func (r *natsRig) publish(ctx context.Context, msgs [][]byte) error {
	n := len(msgs)
	for i := 0; i < n; {
		w := min(natsWindow, n-i)
		futures := make([]jetstream.PubAckFuture, 0, w)
		for k := 0; k < w; k++ {
			f, err := r.edgeJS.PublishAsync(natsSubject, msgs[i+k])
			if err != nil {
				return fmt.Errorf("nats publish: %w", err)
			}
			futures = append(futures, f)
		}
		select {
		case <-r.edgeJS.PublishAsyncComplete():
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Minute):
			return errors.New("nats publish: acknowledgements did not arrive in a minute")
		}
		for _, f := range futures {
			select {
			case err := <-f.Err():
				return fmt.Errorf("nats publish: %w", err)
			default:
			}
		}
		i += w
	}
	return nil
}

// hubMessages is how many messages the hub stream holds.
func (r *natsRig) hubMessages(ctx context.Context) (uint64, error) {
	s, err := r.hubJS.Stream(ctx, r.streams.Hub.Name)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// countingProxy forwards the edge's leaf-node connection to the hub and
// counts the bytes that cross it from the edge to the hub: the real wire
// bytes, protocol included (the server's own in_bytes count payloads only).
type countingProxy struct {
	ln     net.Listener
	target string
	up     atomic.Int64
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func newCountingProxy(target string) (*countingProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &countingProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *countingProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *countingProxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil { // the hub is down: refuse, as a dead link would
			in.Close()
			continue
		}
		if !p.track(in) || !p.track(out) {
			in.Close()
			out.Close()
			return
		}
		p.wg.Add(2)
		go p.pipe(out, in, &p.up)
		go p.pipe(in, out, nil)
	}
}

// pipe copies src to dst, counting into n, and closes both when either side
// ends.
func (p *countingProxy) pipe(dst, src net.Conn, n *atomic.Int64) {
	defer p.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		k, err := src.Read(buf)
		if k > 0 {
			if n != nil {
				n.Add(int64(k))
			}
			if _, werr := dst.Write(buf[:k]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	src.Close()
	dst.Close()
}

func (p *countingProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}

// waitFor polls cond until it holds or limit passes.
func waitFor(limit time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(limit)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not happen in %s", what, limit)
		}
		time.Sleep(2 * time.Millisecond) // polling a condition with a deadline
	}
}

// natsRun measures the NATS side: (a) catch-up — the edge stream holds the
// backlog's n messages; with the leaf connection up, the hub stream that
// sources it is created and the time until it holds all n is measured;
// (b) restart — the hub is stopped, the m messages of more are written on
// the edge, and the time from the hub's restart (store intact) until its
// stream holds all n+m is measured.
func natsRun(ctx context.Context, root string, backlog, more [][]byte) (catchUp, restart SyncResult, err error) {
	n, m := len(backlog), len(more)
	r, err := newNATSRig(root)
	if err != nil {
		return catchUp, restart, err
	}
	defer r.close()
	if _, err := r.edgeJS.CreateStream(ctx, r.streams.Edge); err != nil {
		return catchUp, restart, fmt.Errorf("nats edge stream: %w", err)
	}
	if err := r.publish(ctx, backlog); err != nil {
		return catchUp, restart, err
	}
	encoded := totalSize(backlog)
	upBefore := r.link.up.Load()
	start := time.Now()
	if _, err := r.hubJS.CreateStream(ctx, r.streams.Hub); err != nil {
		return catchUp, restart, fmt.Errorf("nats hub stream: %w", err)
	}
	if err := waitFor(5*time.Minute, fmt.Sprintf("nats catch-up of %d messages", n), func() (bool, error) {
		got, err := r.hubMessages(ctx)
		return got >= uint64(n), err
	}); err != nil {
		return catchUp, restart, err
	}
	secs := time.Since(start).Seconds()
	catchUp = SyncResult{Bench: "sync.catch_up", System: "nats", Entries: n, Seconds: round(secs),
		PerSecond: round(float64(n) / secs), WireBytes: r.link.up.Load() - upBefore, EncodedBytes: encoded, Note: noteCatchUp}
	catchUp.WireOverEncoded = round(float64(catchUp.WireBytes) / float64(encoded))

	r.stopHub()
	if err := r.publish(ctx, more); err != nil {
		return catchUp, restart, err
	}
	start = time.Now()
	if err := r.startHub(); err != nil {
		return catchUp, restart, err
	}
	var recovering error
	if err := waitFor(5*time.Minute, fmt.Sprintf("nats catch-up after the hub restarted (%d+%d messages)", n, m), func() (bool, error) {
		got, err := r.hubMessages(ctx)
		if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) ||
			errors.Is(err, nats.ErrNoResponders) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			recovering = err // the restarted hub is still recovering its streams
			return false, nil
		}
		return got >= uint64(n+m), err
	}); err != nil {
		if recovering != nil {
			err = fmt.Errorf("%w (last: %v)", err, recovering)
		}
		return catchUp, restart, err
	}
	secs = time.Since(start).Seconds()
	restart = SyncResult{Bench: "sync.restart", System: "nats", Entries: m, Backlog: n + m, Seconds: round(secs), Note: noteRestart}
	return catchUp, restart, nil
}
