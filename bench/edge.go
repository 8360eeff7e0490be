package bench

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"canopy/auth"
	"canopy/config"
	"canopy/edge"
)

// Edge is an edge started for a benchmark in a temporary directory, with
// the event key to issue tokens and tickets.
type Edge struct {
	*edge.Edge
	Dir      string
	EventKey ed25519.PrivateKey
}

// StartEdge creates an event and an enrolled node under dir and starts an
// edge on a free loopback port.
func StartEdge(ctx context.Context, dir, slug string) (*Edge, error) {
	now := time.Now().UTC()
	evDir := filepath.Join(dir, "event")
	ev, err := auth.InitEvent(evDir, auth.Event{
		Slug: slug, Name: "Benchmark " + slug, TimeZone: "UTC",
		StartsAt: now.Add(-time.Hour), EndsAt: now.Add(24 * time.Hour), Currency: "EUR",
	})
	if err != nil {
		return nil, err
	}
	key, err := auth.LoadEventKey(evDir)
	if err != nil {
		return nil, err
	}
	nk, enr, err := auth.EnrollNode(key, ev, "bench-edge", auth.NodeEdge, now.Add(-time.Hour), now.Add(48*time.Hour))
	if err != nil {
		return nil, err
	}
	nodeDir := filepath.Join(dir, "node")
	if err := auth.WriteNode(nodeDir, nk, enr); err != nil {
		return nil, err
	}
	cfg := config.Default()
	cfg.Node.Dir = filepath.Join(dir, "data")
	cfg.Node.Event = evDir
	cfg.Node.Key = nodeDir
	cfg.Node.Listen = "127.0.0.1:0"
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	e, err := edge.Open(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	return &Edge{Edge: e, Dir: dir, EventKey: key}, nil
}

// Token issues a device token valid for a day.
func (e *Edge) Token(role auth.Role, device, vendor string) (string, error) {
	tok, err := auth.IssueDevice(e.EventKey, auth.Device{
		Event: e.Event.Slug, Role: role, Name: device, Vendor: vendor,
		NotBefore: time.Now().Add(-time.Minute), Expires: time.Now().Add(24 * time.Hour),
	})
	if err != nil {
		return "", fmt.Errorf("bench token: %w", err)
	}
	return tok, nil
}
