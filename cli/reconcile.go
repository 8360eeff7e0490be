package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"canopy/auth"
	"canopy/edge"
	"canopy/reconcile"
	"canopy/store/sqlite"
)

func init() {
	register(command{
		name:    "report reconcile",
		summary: "the reconciliation report (every conflict between the event's facts) and its hash, from a node's API or data directory",
		run:     runReportReconcile,
	})
}

const reportReconcileUsage = `(--url URL [--token T] | --dir DATA --event EVENT) [--json]

Online, the report is read from a node's device API (GET ` + reconcile.Path + `) with an
organizer or admin token from --token or CANOPY_TOKEN, and its hash is checked
against its content. Offline, it is computed from a node's data directory
(holding ` + edge.StoreFile + `, opened read-only) for the event of EVENT (its
event.json or directory). Nodes holding the same entries print the same hash.`

func runReportReconcile(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "report reconcile", reportReconcileUsage)
	base := fs.String("url", "", "a node's device API, e.g. http://127.0.0.1:8080")
	token := fs.String("token", "", "organizer or admin device token for --url (default $CANOPY_TOKEN)")
	dir := fs.String("dir", "", "a node's data directory, to compute the report offline")
	eventPath := fs.String("event", "", "the event's event.json or its directory (with --dir)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	var (
		rep reconcile.Report
		raw []byte
		err error
	)
	switch {
	case *base != "" && *dir != "":
		return usageErrorf("give either --url or --dir, not both")
	case *base != "":
		if *eventPath != "" {
			return usageErrorf("--event goes with --dir; with --url the node knows its event")
		}
		tok := *token
		if tok == "" {
			tok = os.Getenv("CANOPY_TOKEN")
		}
		if tok == "" {
			return usageErrorf("--url needs an organizer or admin token (--token or CANOPY_TOKEN)")
		}
		if raw, err = fetchReconciliation(ctx, *base, tok); err != nil {
			return err
		}
		if err := json.Unmarshal(raw, &rep); err != nil {
			return fmt.Errorf("the report from %s does not decode: %w", *base, err)
		}
		if got := rep.Hash(); got != rep.Digest {
			return fmt.Errorf("the report from %s says its hash is %q but its content hashes to %s", *base, rep.Digest, got)
		}
	case *dir != "":
		if *eventPath == "" {
			return usageErrorf("--dir needs --event (the event's event.json)")
		}
		if *token != "" {
			return usageErrorf("--token goes with --url")
		}
		if rep, err = reconciliationFromDir(ctx, *dir, *eventPath); err != nil {
			return err
		}
		if raw, err = json.Marshal(rep); err != nil {
			return err
		}
	default:
		return usageErrorf("give --url URL (a node's device API) or --dir DATA --event EVENT (offline)")
	}
	if *asJSON {
		_, err := fmt.Fprintf(e.stdout, "%s\n", strings.TrimSpace(string(raw)))
		return err
	}
	return printReconciliation(e.stdout, rep)
}

// reconciliationFromDir computes the report from a node's store, opened
// read-only.
func reconciliationFromDir(ctx context.Context, dir, eventPath string) (reconcile.Report, error) {
	ev, err := auth.LoadEvent(eventPath)
	if err != nil {
		return reconcile.Report{}, err
	}
	path := dir
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		path = filepath.Join(dir, edge.StoreFile)
	}
	if _, err := os.Stat(path); err != nil {
		return reconcile.Report{}, fmt.Errorf("no store at %s: %w", path, err)
	}
	st, err := sqlite.Open(ctx, path, sqlite.WithReadOnly())
	if err != nil {
		return reconcile.Report{}, err
	}
	defer st.Close()
	return reconcile.Read(ctx, st, ev.Slug, reconcile.Options{})
}

// fetchReconciliation GETs the report; a problem response becomes an error
// carrying its status and detail.
func fetchReconciliation(ctx context.Context, base, token string) ([]byte, error) {
	u, err := url.Parse(strings.TrimRight(base, "/") + reconcile.Path)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageErrorf("--url must be an http:// or https:// URL of a node, got %q", base)
	}
	return getAuthorized(ctx, u, token, 60*time.Second, 256<<20)
}

// printReconciliation writes the report as a summary, a table of items
// (entries as role node-prefix/seq) with their details, and the hash.
func printReconciliation(w io.Writer, r reconcile.Report) error {
	fmt.Fprintf(w, "RECONCILIATION  event %s: %d entries from %d node(s), %d item(s), skew threshold %s\n",
		r.Event, r.Entries, len(r.Heads), len(r.Items), time.Duration(r.SkewThresholdMs)*time.Millisecond)
	if len(r.Items) == 0 {
		fmt.Fprintln(w, "\nNo disagreements.")
	} else {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "#\tKIND\tREASON\tENTITY\tENTRIES\t\n")
		for i, it := range r.Items {
			var refs []string
			for _, e := range it.Entries {
				refs = append(refs, fmt.Sprintf("%s %s/%d", e.Role, e.Node.String()[:8], e.Seq))
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t\n", i+1, it.Kind, orDash(it.Reason), it.Entity, strings.Join(refs, ", "))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(w)
		for i, it := range r.Items {
			fmt.Fprintf(w, "%d. %s\n", i+1, it.Detail)
		}
	}
	_, err := fmt.Fprintf(w, "\nhash %s\n", r.Digest)
	return err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
