package cli

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"canopy/hub"
)

func init() {
	register(command{
		name:    "hub",
		summary: "run the hub daemon (sync for many events) until interrupted",
		run:     runHub,
	})
	register(command{
		name:    "hub add-event",
		summary: "install an event and this hub's node for it in a hub directory",
		run:     runHubAddEvent,
	})
}

func runHub(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "hub", "[--dir DIR] [--listen ADDR] [--db DSN] [flags]")
	var nf nodeFlags
	fs.StringVar(&nf.config, "config", "", "TOML configuration file; the hub reads its [node] table (optional)")
	fs.StringVar(&nf.dir, "dir", "", "hub directory: events/<slug>/ and hub.db (default canopy-data; env CANOPY_NODE_DIR)")
	fs.StringVar(&nf.listen, "listen", "", "HTTP address (default 127.0.0.1:8080; env CANOPY_NODE_LISTEN)")
	fs.StringVar(&nf.logLevel, "log-level", "", "debug, info, warn or error (env CANOPY_LOG_LEVEL)")
	fs.DurationVar(&nf.clockOffset, "clock-offset", 0, "run the hub's clock ahead (+) or behind (-), for drills (env CANOPY_CLOCK_OFFSET)")
	db := fs.String("db", "", "store: a postgres:// URL shared by several hubs, or a SQLite file (default DIR/hub.db; env CANOPY_HUB_DB)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	cfg, err := nf.load(fs)
	if err != nil {
		return err
	}
	dsn := *db
	if dsn == "" {
		dsn = os.Getenv("CANOPY_HUB_DB")
	}
	log := newLogger(e, cfg.Node.LogLevel)
	h, err := hub.Open(ctx, hub.FromConfig(cfg, dsn, log))
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "canopy hub serving %s (%d events: %s)\n", h.URL(), len(h.Events), strings.Join(h.Slugs(), ", "))
	if len(h.Events) == 0 {
		fmt.Fprintf(e.stderr, "No events in %s/%s yet: add one with 'canopy hub add-event' and restart the hub.\n", cfg.Node.Dir, hub.EventsDir)
	}
	<-ctx.Done()
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return h.Close(sctx)
}

func runHubAddEvent(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "hub add-event", "--dir HUBDIR --event EVENTDIR|event.json --node NODEDIR")
	dir := fs.String("dir", "", "hub directory (required)")
	event := fs.String("event", "", "the event's event.json, or its directory (only event.json is copied) (required)")
	node := fs.String("node", "", "this hub's node directory for the event, from 'canopy node enroll --role hub' (required)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	switch {
	case *dir == "":
		return usageErrorf("--dir is required")
	case *event == "":
		return usageErrorf("--event is required")
	case *node == "":
		return usageErrorf("--node is required")
	}
	slug, err := hub.AddEvent(*dir, *event, *node, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, slug)
	fmt.Fprintf(e.stderr, "Added event %s to %s; restart the hub to serve it. Edges sync with [sync] hubs = [\"http://HUB:PORT/v1/events/%s\"].\n",
		slug, *dir, slug)
	return nil
}
