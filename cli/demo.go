package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"canopy/auth"
	"canopy/config"
	"canopy/edge"
)

func init() {
	register(command{
		name:    "demo",
		summary: "run a demo event on this machine: an edge on embedded defaults, with tokens and curl commands",
		run:     runDemo,
	})
}

// demoSlug is the demo event's slug.
const demoSlug = "demo-night-market"

func runDemo(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "demo", "[flags]")
	dir := fs.String("dir", "canopy-demo", "directory for the demo event, node and data (reused if present)")
	listen := fs.String("listen", "127.0.0.1:8080", "device API address (a free port is used if this one is taken)")
	logLevel := fs.String("log-level", "warn", "log level of the edge (debug, info, warn, error)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	d, err := prepareDemo(*dir)
	if err != nil {
		return err
	}
	cfg := config.Default()
	cfg.Node.Dir = filepath.Join(d.dir, "data")
	cfg.Node.Event = filepath.Join(d.dir, "event")
	cfg.Node.Key = filepath.Join(d.dir, "node")
	cfg.Node.Listen = *listen
	cfg.Node.LogLevel = *logLevel
	if ln, err := net.Listen("tcp", *listen); err != nil {
		cfg.Node.Listen = "127.0.0.1:0"
	} else {
		ln.Close()
	}
	ed, err := edge.Open(ctx, cfg, newLogger(e, *logLevel))
	if err != nil {
		return err
	}
	u := ed.URL()
	w := e.stdout
	fmt.Fprintf(w, "Canopy demo: event %q, edge node %s\n\n", ed.Event.Name, ed.Enrolment.Node)
	fmt.Fprintf(w, "  device API   %s\n", u)
	fmt.Fprintf(w, "  health       %s/healthz   %s/readyz\n", u, u)
	fmt.Fprintf(w, "  metrics      %s/metrics\n", u)
	fmt.Fprintf(w, "  OpenAPI      %s/v1/openapi.yaml\n\n", u)
	fmt.Fprintf(w, "Organizer token (also in %s):\n  %s\n\n", d.tokenPath, d.token)
	fmt.Fprintf(w, "Try it:\n")
	fmt.Fprintf(w, "  export TOKEN=$(cat %s)\n", d.tokenPath)
	fmt.Fprintf(w, "  curl -s -X POST %s/v1/log/notes -H \"Authorization: Bearer $TOKEN\" -H 'Idempotency-Key: demo-1' -H 'Content-Type: application/json' -d '{\"text\":\"doors open\"}'\n", u)
	fmt.Fprintf(w, "  curl -s %s/v1/log/entries -H \"Authorization: Bearer $TOKEN\"\n", u)
	fmt.Fprintf(w, "  curl -s %s/v1/log/checkpoint -H \"Authorization: Bearer $TOKEN\"\n\n", u)
	fmt.Fprintf(w, "Press Ctrl-C to stop.\n")
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err = ed.Close(sctx)
	fmt.Fprintf(w, "\nStopped. The demo's event, keys and data are in %s (run 'canopy demo --dir %s' again to continue).\n", d.dir, d.dir)
	return err
}

type demoFiles struct {
	dir, tokenPath, token string
}

// prepareDemo creates the demo event, an edge enrolment and an organizer
// token in dir, or reuses what is there.
func prepareDemo(dir string) (*demoFiles, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("demo directory: %w", err)
	}
	evDir := filepath.Join(abs, "event")
	ev, err := auth.LoadEvent(evDir)
	if errors.Is(err, os.ErrNotExist) {
		now := time.Now().UTC().Truncate(time.Hour)
		ev, err = auth.InitEvent(evDir, auth.Event{
			Slug:     demoSlug,
			Name:     "Demo Night Market",
			TimeZone: "Europe/Berlin",
			StartsAt: now,
			EndsAt:   now.Add(7 * 24 * time.Hour),
			Currency: "EUR",
		})
	}
	if err != nil {
		return nil, fmt.Errorf("demo event: %w", err)
	}
	key, err := auth.LoadEventKey(evDir)
	if err != nil {
		return nil, fmt.Errorf("demo event key: %w", err)
	}
	nodeDir := filepath.Join(abs, "node")
	if _, _, err := auth.LoadNode(nodeDir); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("demo node: %w", err)
		}
		nk, enr, err := auth.EnrollNode(key, ev, "demo-edge", auth.NodeEdge, ev.StartsAt.Add(-time.Hour), ev.EndsAt.Add(24*time.Hour))
		if err != nil {
			return nil, fmt.Errorf("demo node: %w", err)
		}
		if err := auth.WriteNode(nodeDir, nk, enr); err != nil {
			return nil, fmt.Errorf("demo node: %w", err)
		}
	}
	tok, err := auth.IssueDevice(key, auth.Device{
		Event:     ev.Slug,
		Role:      auth.RoleOrganizer,
		Name:      "demo-organizer",
		NotBefore: time.Now().Add(-time.Minute),
		Expires:   time.Now().Add(24 * time.Hour),
	})
	if err != nil {
		return nil, fmt.Errorf("demo token: %w", err)
	}
	tokenPath := filepath.Join(abs, "organizer.token")
	if err := os.WriteFile(tokenPath, []byte(tok+"\n"), 0o600); err != nil {
		return nil, err
	}
	return &demoFiles{dir: abs, tokenPath: tokenPath, token: tok}, nil
}
