package cli

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"canopy/config"
	"canopy/edge"
)

func init() {
	register(command{
		name:    "edge",
		summary: "run the edge daemon (device API, ledger) until interrupted",
		run:     runEdge,
	})
}

// nodeFlags are the flags every daemon shares; set ones override the file
// and the environment.
type nodeFlags struct {
	config, dir, event, key, listen, logLevel string
	clockOffset                               time.Duration
}

func (f *nodeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "TOML configuration file (optional; embedded defaults otherwise)")
	fs.StringVar(&f.dir, "dir", "", "data directory (default canopy-data; env CANOPY_NODE_DIR)")
	fs.StringVar(&f.event, "event", "", "event.json or its directory (default DIR/event; env CANOPY_NODE_EVENT)")
	fs.StringVar(&f.key, "key", "", "node directory with node.key and enrolment.token (default DIR/node; env CANOPY_NODE_KEY)")
	fs.StringVar(&f.listen, "listen", "", "device API address (default 127.0.0.1:8080; env CANOPY_NODE_LISTEN)")
	fs.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (env CANOPY_LOG_LEVEL)")
	fs.DurationVar(&f.clockOffset, "clock-offset", 0, "run this node's clock ahead (+) or behind (-), for drills (env CANOPY_CLOCK_OFFSET)")
}

// load layers defaults, the file, the environment and the flags that were set.
func (f *nodeFlags) load(fs *flag.FlagSet) (config.Config, error) {
	path := f.config
	if path == "" {
		path = os.Getenv("CANOPY_CONFIG")
	}
	cfg, err := config.Load(path)
	if err != nil {
		return cfg, err
	}
	if err := cfg.ApplyEnv(os.Getenv); err != nil {
		return cfg, err
	}
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "dir":
			cfg.Node.Dir = f.dir
		case "event":
			cfg.Node.Event = f.event
		case "key":
			cfg.Node.Key = f.key
		case "listen":
			cfg.Node.Listen = f.listen
		case "log-level":
			cfg.Node.LogLevel = f.logLevel
		case "clock-offset":
			cfg.Node.ClockOffset.Duration = f.clockOffset
		}
	})
	return cfg, cfg.Resolve()
}

func newLogger(e *env, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(e.stderr, &slog.HandlerOptions{Level: l}))
}

func runEdge(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "edge", "[flags]")
	var nf nodeFlags
	nf.register(fs)
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	cfg, err := nf.load(fs)
	if err != nil {
		return err
	}
	log := newLogger(e, cfg.Node.LogLevel)
	ed, err := edge.Open(ctx, cfg, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "canopy edge for %q serving %s (node %s)\n", ed.Event.Slug, ed.URL(), ed.Enrolment.Node)
	go showCatchUp(ctx, e.stderr, ed)
	<-ctx.Done()
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return ed.Close(sctx)
}
