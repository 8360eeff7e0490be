package hub

import (
	"canopy/reconcile"
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"canopy/api"
	"canopy/auth"
	"canopy/journal"
	"canopy/replica"
	"canopy/revocation"
	"canopy/store"
	"canopy/viewset"
	"canopy/witness"
)

// Event is one event a hub serves: the hub's own log in it, its sync
// endpoint and its API (audit routes and sync), mounted at
// /v1/events/<slug>/.
type Event struct {
	Event     *auth.Event
	Enrolment *auth.Enrolment
	Journal   *journal.Journal
	Sync      *replica.Node
	// Witness checks and cosigns the checkpoints of the event's nodes and
	// quarantines a node that shows two histories.
	Witness *witness.Witness
	API     *api.Server
	store   store.Store
}

func (ev *Event) ready(ctx context.Context) error {
	if _, _, err := ev.store.Head(ctx, ev.Event.Slug, ev.Journal.Node()); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// eventPrefix is the path prefix an event is served under.
func eventPrefix(slug string) string { return "/v1/events/" + slug }

// loadedEvent is an event directory read and checked, before any store.
type loadedEvent struct {
	dir       string
	event     *auth.Event
	key       ed25519.PrivateKey
	token     string
	enrolment *auth.Enrolment
}

// loadEvent reads an event directory (event.json and node/) and checks
// that the directory is named by the slug and that the node is the hub's,
// enrolled in this event with this key, and valid at now.
func loadEvent(dir string, now time.Time) (*loadedEvent, error) {
	ev, err := auth.LoadEvent(filepath.Join(dir, auth.EventFile))
	if err != nil {
		return nil, fmt.Errorf("event in %s: %w", dir, err)
	}
	if name := filepath.Base(dir); name != ev.Slug {
		return nil, fmt.Errorf("event directory %s holds event %q; the directory must be named by the slug", dir, ev.Slug)
	}
	nodeDir := filepath.Join(dir, NodeDir)
	key, tok, err := auth.LoadNode(nodeDir)
	if err != nil {
		return nil, fmt.Errorf("event %s: hub node in %s (add events with 'canopy hub add-event'): %w", ev.Slug, nodeDir, err)
	}
	enr, err := checkHubEnrolment(ev, key, tok, now)
	if err != nil {
		return nil, fmt.Errorf("event %s: %s: %w", ev.Slug, nodeDir, err)
	}
	return &loadedEvent{dir: dir, event: ev, key: key, token: tok, enrolment: enr}, nil
}

// checkHubEnrolment verifies tok against the event key and checks that it
// enrols key as a hub.
func checkHubEnrolment(ev *auth.Event, key ed25519.PrivateKey, tok string, now time.Time) (*auth.Enrolment, error) {
	enr, err := auth.VerifyEnrolment(ev, tok, now)
	if err != nil {
		return nil, fmt.Errorf("enrolment: %w", err)
	}
	if !enr.PublicKey.Equal(key.Public()) {
		return nil, fmt.Errorf("the enrolment is for another key (node %s)", enr.Node)
	}
	if enr.Role != auth.NodeHub {
		return nil, fmt.Errorf("node %s (%q) is enrolled as %q, not as a hub (enrol it with 'canopy node enroll --role hub')",
			enr.Node, enr.Name, enr.Role)
	}
	return enr, nil
}

// openEvent opens the hub's journal of one event on the shared store and
// its API with the sync routes.
func (h *Hub) openEvent(ctx context.Context, le *loadedEvent) (*Event, error) {
	slug := le.event.Slug
	log := h.log.With(logKeyEvent, slug, logKeyNode, le.enrolment.Node.String())
	reg := prometheus.WrapRegistererWith(prometheus.Labels{"event": slug}, h.registry)
	j, err := journal.Open(ctx, journal.Config{
		Event: slug, Key: le.key, Store: h.Store, Views: viewset.All(), Clock: h.clock, Logger: log, Metrics: reg,
		// Other hub processes may write the same PostgreSQL database.
		Shared: isPostgres(h.Config.DB),
	})
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	ev := &Event{Event: le.event, Enrolment: le.enrolment, Journal: j, store: h.Store}
	ok := false
	defer func() {
		if !ok {
			_ = j.Close(context.WithoutCancel(ctx))
		}
	}()
	head, _, err := h.Store.Head(ctx, slug, le.enrolment.Node)
	if err != nil {
		return nil, fmt.Errorf("read the hub's head: %w", err)
	}
	if head == 0 {
		// The first entry of every log is the node's enrolment, so the log
		// verifies with event.json alone.
		if _, err := j.Append(ctx, auth.EnrolledKind, le.enrolment.Node.String(), auth.EnrolledBody(le.token)); err != nil {
			return nil, fmt.Errorf("write enrolment entry: %w", err)
		}
	}
	verifier := auth.NewVerifier(le.event, h.clock)
	ev.API, err = api.New(api.Config{
		Event:        slug,
		Verifier:     revocation.NewGuard(verifier, h.Store, slug),
		Appender:     j,
		Log:          j.AuditLog(),
		Views:        j.ViewReader(),
		Ready:        ev.ready,
		Registerer:   reg,
		Gatherer:     h.registry,
		Logger:       log,
		Clock:        h.clock,
		MaxBodyBytes: h.Config.MaxBody,
	})
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	// The hub's node key also signs its witness cosignatures in this event.
	ev.Witness, err = witness.New(witness.Config{Event: slug, Key: le.key, Store: h.Store, Appender: j, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	ev.Sync = &replica.Node{
		Event: le.event, Journal: j, Store: h.Store, Clock: h.clock, Logger: log,
		Heartbeat: h.Config.Heartbeat, Stopping: h.stopping, Witness: ev.Witness,
	}
	replica.Register(ev.API, ev.Sync)
	// The same reconciliation report as every edge's, byte for byte once
	// they hold the same entries.
	reconcile.Register(ev.API, h.Store, slug)
	ok = true
	return ev, nil
}

// AddEvent installs an event in a hub's data directory: it copies the
// public event.json (eventPath is the file or the organizer's event
// directory; event.key is never copied) and the hub's node directory
// (node.key and enrolment.token, made with 'canopy node enroll --role hub')
// into hubDir/events/<slug>/, after checking that the enrolment is signed by
// the event's key, for this node's key, with role hub, and valid at now. It
// refuses to replace an event already installed, and returns the slug.
func AddEvent(hubDir, eventPath, nodeDir string, now time.Time) (string, error) {
	if hubDir == "" {
		return "", fmt.Errorf("hub: no hub directory")
	}
	src := eventPath
	if fi, err := os.Stat(src); err == nil && fi.IsDir() {
		src = filepath.Join(src, auth.EventFile)
	}
	ev, err := auth.LoadEvent(src)
	if err != nil {
		return "", fmt.Errorf("hub: %w", err)
	}
	raw, err := os.ReadFile(src)
	if err != nil {
		return "", fmt.Errorf("hub: %w", err)
	}
	key, tok, err := auth.LoadNode(nodeDir)
	if err != nil {
		return "", fmt.Errorf("hub: node in %s: %w", nodeDir, err)
	}
	if _, err := checkHubEnrolment(ev, key, tok, now); err != nil {
		return "", fmt.Errorf("hub: node in %s for event %s: %w", nodeDir, ev.Slug, err)
	}
	root := filepath.Join(hubDir, EventsDir)
	dest := filepath.Join(root, ev.Slug)
	if _, err := os.Stat(dest); err == nil {
		return "", fmt.Errorf("hub: event %s is already installed in %s; refusing to replace it", ev.Slug, dest)
	} else if !os.IsNotExist(err) {
		return "", fmt.Errorf("hub: %w", err)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return "", fmt.Errorf("hub: events directory: %w", err)
	}
	// Build the directory aside and rename it into place, so a hub never
	// sees half an event.
	tmp, err := os.MkdirTemp(root, ".tmp-"+ev.Slug+"-")
	if err != nil {
		return "", fmt.Errorf("hub: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := os.WriteFile(filepath.Join(tmp, auth.EventFile), raw, 0o644); err != nil {
		return "", fmt.Errorf("hub: write event.json: %w", err)
	}
	if err := auth.WriteNode(filepath.Join(tmp, NodeDir), key, tok); err != nil {
		return "", fmt.Errorf("hub: copy node: %w", err)
	}
	if err := os.Chmod(tmp, 0o700); err != nil {
		return "", fmt.Errorf("hub: %w", err)
	}
	if err := os.Rename(tmp, dest); err != nil {
		return "", fmt.Errorf("hub: install event %s: %w", ev.Slug, err)
	}
	return ev.Slug, nil
}
