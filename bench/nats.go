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
	u, err := url.Parse("nats-leaf://127.0.0.1:" + strconv.Itoa(r.leafPort))
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
	os.RemoveAll(r.dir)
}

// publish writes n messages of size bytes to the edge stream, waiting for
// every acknowledgement (each one after its fsync). It publishes in windows
// of natsWindow so the client never stalls on too many outstanding
// acknowledgements.
func (r *natsRig) publish(ctx context.Context, n, size int) error {
	payload := []byte(pad(size))
	for i := 0; i < n; {
		w := min(natsWindow, n-i)
		futures := make([]jetstream.PubAckFuture, 0, w)
		for k := 0; k < w; k++ {
			f, err := r.edgeJS.PublishAsync(natsSubject, payload)
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

// leafInBytes is how many bytes the hub has received over its leaf-node
// connections since it started.
func (r *natsRig) leafInBytes() int64 {
	lz, err := r.hub.Leafz(nil)
	if err != nil {
		return 0
	}
	var n int64
	for _, l := range lz.Leafs {
		n += l.InBytes
	}
	return n
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

// natsRun measures the NATS side: (a) catch-up — the edge stream holds n
// messages of size bytes; with the leaf connection up, the hub stream that
// sources it is created and the time until it holds all n is measured;
// (b) restart — the hub is stopped, m more messages are written on the
// edge, and the time from the hub's restart (store intact) until its stream
// holds all n+m is measured.
func natsRun(ctx context.Context, root string, n, m, size int) (catchUp, restart SyncResult, err error) {
	r, err := newNATSRig(root)
	if err != nil {
		return catchUp, restart, err
	}
	defer r.close()
	if _, err := r.edgeJS.CreateStream(ctx, r.streams.Edge); err != nil {
		return catchUp, restart, fmt.Errorf("nats edge stream: %w", err)
	}
	if err := r.publish(ctx, n, size); err != nil {
		return catchUp, restart, err
	}
	encoded := int64(n) * int64(size)
	inBefore := r.leafInBytes()
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
		PerSecond: round(float64(n) / secs), WireBytes: r.leafInBytes() - inBefore, EncodedBytes: encoded, Note: noteCatchUp}
	catchUp.WireOverEncoded = round(float64(catchUp.WireBytes) / float64(encoded))

	r.stopHub()
	if err := r.publish(ctx, m, size); err != nil {
		return catchUp, restart, err
	}
	start = time.Now()
	if err := r.startHub(); err != nil {
		return catchUp, restart, err
	}
	if err := waitFor(5*time.Minute, fmt.Sprintf("nats catch-up after the hub restarted (%d+%d messages)", n, m), func() (bool, error) {
		got, err := r.hubMessages(ctx)
		if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			return false, nil // the restarted hub is still recovering its streams
		}
		return got >= uint64(n+m), err
	}); err != nil {
		return catchUp, restart, err
	}
	secs = time.Since(start).Seconds()
	restart = SyncResult{Bench: "sync.restart", System: "nats", Entries: m, Backlog: n + m, Seconds: round(secs), Note: noteRestart}
	return catchUp, restart, nil
}
