package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"canopy/api"
	"canopy/auth"
	"canopy/edge"
	"canopy/ledger"
	"canopy/store/sqlite"
	"canopy/viewset"
)

func init() {
	register(command{
		name:    "verify log",
		summary: "verify a node's whole log offline: signatures, chain, checkpoints and their consistency",
		run:     runVerifyLog,
	})
}

// errVerifyFailed is returned when verification ran and found problems; the
// problems themselves have been printed.
var errVerifyFailed = errors.New("verification failed")

func runVerifyLog(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "verify log", "DIR|URL --event EVENT\n\nDIR is a node's data directory (holding "+edge.StoreFile+"); URL is a node's device API,\nread with an organizer or admin token from --token or CANOPY_TOKEN.")
	eventPath := fs.String("event", "", "the event's event.json or its directory (required)")
	token := fs.String("token", "", "device token for URL mode (default $CANOPY_TOKEN)")
	if err := parseFlags(fs, reorderArgs(args), 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErrorf("want one DIR or URL to verify")
	}
	if *eventPath == "" {
		return usageErrorf("--event is required (the event's event.json)")
	}
	ev, err := auth.LoadEvent(*eventPath)
	if err != nil {
		return err
	}
	target := fs.Arg(0)
	var logs []nodeLog
	viewsErr := error(nil)
	if strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://") {
		tok := *token
		if tok == "" {
			tok = os.Getenv("CANOPY_TOKEN")
		}
		if tok == "" {
			return usageErrorf("URL mode needs an organizer or admin token (--token or CANOPY_TOKEN)")
		}
		l, err := fetchLog(ctx, target, tok)
		if err != nil {
			return err
		}
		logs = []nodeLog{l}
	} else {
		d, err := readDirLogs(ctx, target, ev.Slug)
		if err != nil {
			return err
		}
		logs, viewsErr = d.logs, d.views
	}
	if len(logs) == 0 {
		return fmt.Errorf("%s holds no entries of event %q", target, ev.Slug)
	}
	failed := false
	for _, l := range logs {
		enr, err := verifyNodeLog(ev, l)
		if err != nil {
			failed = true
			fmt.Fprintf(e.stdout, "FAIL %s\n", err)
			continue
		}
		l.name = enr.Name
		last := "no checkpoint"
		if n := len(l.checkpoints); n > 0 {
			if cp, err := ledger.OpenCheckpoint(l.checkpoints[n-1], ev.Slug, enr.PublicKey); err == nil {
				last = fmt.Sprintf("latest checkpoint size %d root %s", cp.Size, cp.Root)
			}
		}
		fmt.Fprintf(e.stdout, "OK   node %s (%s): %d entries, %d checkpoints, %s\n", l.node, l.name, len(l.entries), len(l.checkpoints), last)
	}
	if viewsErr != nil {
		failed = true
		fmt.Fprintf(e.stdout, "FAIL views: %v\n", viewsErr)
	} else if !strings.HasPrefix(target, "http") {
		fmt.Fprintf(e.stdout, "OK   views: rebuilt from the entries, byte-identical to the stored views\n")
	}
	if failed {
		return errVerifyFailed
	}
	return nil
}

// reorderArgs moves flags before the positional argument, so both
// "verify log DIR --event E" and "verify log --event E DIR" work.
func reorderArgs(args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			flags = append(flags, a)
			if !strings.Contains(a, "=") && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				flags = append(flags, args[i+1])
				i++
			}
			continue
		}
		pos = append(pos, a)
	}
	return append(flags, pos...)
}

// nodeLog is one author's log as read from a store or a node's API.
type nodeLog struct {
	node        ledger.NodeID
	name        string
	entries     []*ledger.Entry
	checkpoints [][]byte
}

// verifyNodeLog learns the author's key from its enrolment entry (seq 1),
// verified with the event key, then checks the whole log.
func verifyNodeLog(ev *auth.Event, l nodeLog) (*auth.Enrolment, error) {
	if len(l.entries) == 0 || l.entries[0].Seq != 1 {
		return nil, fmt.Errorf("node %s: the log does not start at seq 1, so its enrolment is missing", l.node)
	}
	enr, err := auth.EnrolmentFromEntry(ev, l.entries[0])
	if err != nil {
		return nil, fmt.Errorf("node %s: enrolment entry: %w", l.node, err)
	}
	if enr.Node != l.node {
		return nil, fmt.Errorf("node %s: enrolment names node %s", l.node, enr.Node)
	}
	return enr, ledger.VerifyLog(ev.Slug, enr.PublicKey, l.entries, l.checkpoints)
}

// dirLogs is what a data directory holds: every author's log, and the
// result of rebuilding the views from the entries.
type dirLogs struct {
	logs  []nodeLog
	views error
}

// readDirLogs reads every author's log from a node's data directory, and
// rebuilds the views from the entries to compare them with the stored ones.
func readDirLogs(ctx context.Context, dir, event string) (dirLogs, error) {
	path := dir
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		path = filepath.Join(dir, edge.StoreFile)
	}
	if _, err := os.Stat(path); err != nil {
		return dirLogs{}, fmt.Errorf("no store at %s: %w", path, err)
	}
	st, err := sqlite.Open(ctx, path, sqlite.WithReadOnly())
	if err != nil {
		return dirLogs{}, err
	}
	defer st.Close()
	vec, err := st.Vector(ctx, event)
	if err != nil {
		return dirLogs{}, err
	}
	nodes := make([]ledger.NodeID, 0, len(vec))
	for n := range vec {
		nodes = append(nodes, n)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].String() < nodes[j].String() })
	var logs []nodeLog
	for _, n := range nodes {
		ss, err := st.Entries(ctx, event, n, 1, ^uint64(0), 0)
		if err != nil {
			return dirLogs{}, fmt.Errorf("node %s: %w", n, err)
		}
		cps, err := st.Checkpoints(ctx, event, n)
		if err != nil {
			return dirLogs{}, fmt.Errorf("node %s: %w", n, err)
		}
		l := nodeLog{node: n}
		for _, s := range ss {
			l.entries = append(l.entries, s.Entry)
		}
		for _, c := range cps {
			l.checkpoints = append(l.checkpoints, c.Note)
		}
		logs = append(logs, l)
	}
	return dirLogs{logs: logs, views: viewset.All().Verify(ctx, st, event)}, nil
}

// fetchLog reads a node's own log and its latest checkpoint from its device
// API. The entries are checked in their encoded form.
func fetchLog(ctx context.Context, base, token string) (nodeLog, error) {
	base = strings.TrimRight(base, "/")
	client := &http.Client{Timeout: 30 * time.Second}
	get := func(path string) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
		}
		return b, nil
	}
	var l nodeLog
	from := uint64(1)
	for {
		b, err := get(fmt.Sprintf("/v1/log/entries?from=%d&limit=1000", from))
		if err != nil {
			return l, err
		}
		var page api.EntryPage
		if err := json.Unmarshal(b, &page); err != nil {
			return l, fmt.Errorf("entries page from %d: %w", from, err)
		}
		l.node = page.Node
		for _, ej := range page.Entries {
			e, err := ledger.Decode(ej.Encoded)
			if err != nil {
				return l, fmt.Errorf("entry seq %d: %w", ej.Seq, err)
			}
			l.entries = append(l.entries, e)
		}
		if page.Next == nil {
			break
		}
		if *page.Next <= from {
			return l, fmt.Errorf("entries page from %d: next cursor %d does not advance", from, *page.Next)
		}
		from = *page.Next
	}
	cp, err := get("/v1/log/checkpoint")
	switch {
	case err == nil:
		l.checkpoints = [][]byte{cp}
	case strings.Contains(err.Error(), "404"):
		// No checkpoint signed yet: the entries are still checked.
	default:
		return l, err
	}
	return l, nil
}
