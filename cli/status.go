package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"canopy/ledger"
	"canopy/replica"
)

func init() {
	register(command{
		name:    "status",
		summary: "a node's sync status: its event, vector and each peer's link (connected, last contact, backlog, entries sent and received)",
		run:     runStatus,
	})
}

const statusUsage = `--url URL [--json]

Reads GET /v1/sync/status from a node (an edge, or a hub's event under
/v1/events/<slug>); it needs no token and carries node ids and counts only.`

// statusPath is the sync status route.
const statusPath = "/v1/sync/status"

func runStatus(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "status", statusUsage)
	base := fs.String("url", "", "a node's API, e.g. http://127.0.0.1:8080")
	asJSON := fs.Bool("json", false, "print the status as JSON")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *base == "" {
		return usageErrorf("give --url URL (a node's API)")
	}
	u, err := url.Parse(*base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageErrorf("--url must be an http:// or https:// URL with a host, got %q", *base)
	}
	raw, err := fetchStatus(ctx, strings.TrimRight(*base, "/")+statusPath)
	if err != nil {
		return err
	}
	var st replica.StatusResponse
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("the status from %s does not decode: %w", *base, err)
	}
	if *asJSON {
		_, err := fmt.Fprintf(e.stdout, "%s\n", strings.TrimSpace(string(raw)))
		return err
	}
	return printStatus(e.stdout, st, time.Now())
}

func fetchStatus(ctx context.Context, u string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read the status: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("read the status from %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(b)))
	}
	return b, nil
}

// printStatus writes the node, its vector and a table of its peers.
func printStatus(w io.Writer, st replica.StatusResponse, now time.Time) error {
	total := uint64(0)
	nodes := make([]ledger.NodeID, 0, len(st.Vector))
	for n, seq := range st.Vector {
		nodes = append(nodes, n)
		total += seq
	}
	slices.SortFunc(nodes, func(a, b ledger.NodeID) int { return strings.Compare(a.String(), b.String()) })
	fmt.Fprintf(w, "node    %s\nevent   %s\nvector  %d authors, %d entries\n", st.Node, st.Event, len(st.Vector), total)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, n := range nodes {
		mark := ""
		if n == st.Node {
			mark = "\t(this node)"
		}
		fmt.Fprintf(tw, "  %s\t%d%s\n", n, st.Vector[n], mark)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(st.Peers) == 0 {
		_, err := fmt.Fprintln(w, "peers   none")
		return err
	}
	fmt.Fprintln(w, "peers")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  URL\tNODE\tCONNECTED\tLAST CONTACT\tBACKLOG\tSENT\tRECEIVED\tLAST ERROR")
	for _, p := range st.Peers {
		node := p.Node
		if node == "" {
			node = "-"
		}
		contact := "never"
		if !p.LastContact.IsZero() {
			contact = fmt.Sprintf("%s ago", now.Sub(p.LastContact).Round(time.Millisecond))
		}
		lastErr := p.LastError
		if lastErr == "" {
			lastErr = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", p.URL, node, yesNo(p.Connected), contact, p.Backlog, p.Sent, p.Received, lastErr)
	}
	return tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
