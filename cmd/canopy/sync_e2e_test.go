package main_test

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var hubServing = regexp.MustCompile(`^canopy hub serving (http://127\.0\.0\.1:[0-9]+) `)

// report is the part of GET /v1/reconciliation the test reads.
type report struct {
	Heads []struct {
		Node string `json:"node"`
		Seq  uint64 `json:"seq"`
	} `json:"heads"`
	Counts map[string]int `json:"counts"`
	Hash   string         `json:"hash"`
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestPartitionedEdgesConverge runs a hub and three edges as real
// processes. The hub goes away (a partition: the edges only meet through
// it); meanwhile two edges accept the same Idempotency-Key and two doors on
// different edges admit the same ticket; an edge is killed with SIGKILL
// while catching up. Once the hub is back, every edge holds every
// acknowledged entry, byte-identical reports (same hash), and the report
// lists exactly the two injected conflicts.
func TestPartitionedEdgesConverge(t *testing.T) {
	f := newFixture(t)
	hubDir := filepath.Join(f.root, "HUB")
	hubNode := filepath.Join(f.root, "hubnode")
	mustCanopy(t, "node", "enroll", "--event", f.ev, "--name", "hub-1", "--role", "hub", "--out", hubNode)
	mustCanopy(t, "hub", "add-event", "--dir", hubDir, "--event", f.ev, "--node", hubNode)
	hubAddr := freePort(t)
	startHub := func() *edgeProc {
		p, line := startDaemon(t, nil, "hub", "--dir", hubDir, "--listen", hubAddr, "--log-level", "warn")
		if !hubServing.MatchString(line) {
			t.Fatalf("hub's first line %q", line)
		}
		return p
	}
	hub := startHub()
	hubURL := "http://" + hubAddr + "/v1/events/" + slug

	type edgeDef struct {
		name, data, node, addr string
		p                      *edgeProc
	}
	edges := make([]*edgeDef, 3)
	for i := range edges {
		d := &edgeDef{name: fmt.Sprintf("edge-%c", 'a'+i), data: filepath.Join(f.root, fmt.Sprintf("data-%d", i)), addr: freePort(t)}
		d.node = filepath.Join(d.data, "node")
		mustCanopy(t, "node", "enroll", "--event", f.ev, "--name", d.name, "--role", "edge", "--out", d.node)
		edges[i] = d
	}
	start := func(d *edgeDef) {
		d.p = startEdgeEnv(t, []string{"CANOPY_SYNC_HUBS=" + hubURL}, slug,
			"--dir", d.data, "--event", f.ev, "--key", d.node, "--listen", d.addr, "--log-level", "warn")
	}
	for _, d := range edges {
		start(d)
	}
	tickets := strings.Split(strings.TrimSpace(mustCanopy(t, "ticket", "issue", "--event", f.ev, "--count", "2").stdout), "\n")[1:]
	ticket := tickets[0][strings.LastIndex(tickets[0], ",")+1:]

	type ack struct{ node, hash string }
	var acked []ack
	note := func(d *edgeDef, key, text string) {
		t.Helper()
		r := do(t, "POST", d.p.url+"/v1/log/notes", f.org, fmt.Sprintf(`{"text":%q}`, text), "Idempotency-Key", key)
		if r.status != 201 {
			t.Fatalf("note on %s: %d %s", d.name, r.status, r.body)
		}
		var n noteResponse
		json.Unmarshal(r.body, &n)
		acked = append(acked, ack{n.Entry.Node.String(), n.Entry.Hash.String()})
	}
	reportOf := func(d *edgeDef) report {
		t.Helper()
		r := do(t, "GET", d.p.url+"/v1/reconciliation", f.org, "")
		if r.status != 200 {
			t.Fatalf("report of %s: %d %s", d.name, r.status, r.body)
		}
		var rep report
		if err := json.Unmarshal(r.body, &rep); err != nil {
			t.Fatal(err)
		}
		return rep
	}
	converge := func(what string) report {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			reps := []report{reportOf(edges[0]), reportOf(edges[1]), reportOf(edges[2])}
			if reps[0].Hash == reps[1].Hash && reps[1].Hash == reps[2].Hash && len(reps[0].Heads) == 4 {
				return reps[0]
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: edges did not converge within 30s: %+v", what, reps)
			}
			time.Sleep(20 * time.Millisecond) // polling for convergence
		}
	}

	// Connected: writes everywhere converge through the hub.
	for i, d := range edges {
		note(d, fmt.Sprintf("hello-%d", i), "hello from "+d.name)
	}
	if rep := converge("connected"); rep.Counts["duplicate_idempotency_key"] != 0 || rep.Counts["double_entry"] != 0 {
		t.Fatalf("conflicts before any partition: %v", rep.Counts)
	}

	// Partition: the hub goes away.
	hub.stop(t)
	note(edges[0], "same-key", "accepted at a")
	note(edges[1], "same-key", "accepted at b")
	for i, d := range edges {
		r := do(t, "POST", d.p.url+"/v1/checkins", f.door, fmt.Sprintf(`{"ticket":%q,"door":"door-%d","direction":"in"}`, ticket, i), "Idempotency-Key", fmt.Sprintf("scan-%d", i))
		if r.status != 200 || !strings.Contains(string(r.body), `"accepted":true`) {
			if i < 2 {
				t.Fatalf("scan at %s during the partition: %d %s", d.name, r.status, r.body)
			}
		}
		if i == 1 {
			break // two doors on two edges admit the ticket
		}
	}
	for i := 0; i < 30; i++ {
		note(edges[i%3], fmt.Sprintf("cut-%d", i), "during the partition")
	}

	// Heal; kill edge c with SIGKILL while it catches up, then restart it.
	hub = startHub()
	note(edges[2], "after-heal", "c writes as the link returns")
	edges[2].p.cmd.Process.Kill()
	<-edges[2].p.exited
	start(edges[2])

	rep := converge("after the partition")
	if rep.Counts["duplicate_idempotency_key"] != 1 || rep.Counts["double_entry"] != 1 {
		t.Fatalf("report counts %v: want exactly one duplicate key and one double entry", rep.Counts)
	}
	// The hub serves the same report, byte for byte.
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := do(t, "GET", hubURL+"/v1/reconciliation", f.org, "")
		var hubRep report
		json.Unmarshal(r.body, &hubRep)
		if r.status == 200 && hubRep.Hash == rep.Hash {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hub's report (%d) %s is not the edges' %s", r.status, hubRep.Hash, rep.Hash)
		}
		time.Sleep(20 * time.Millisecond) // polling for the hub to converge
	}
	// Every acknowledged entry is on every edge.
	for _, d := range edges {
		for _, a := range acked {
			r := do(t, "GET", d.p.url+"/v1/log/entries?node="+a.node+"&limit=1000", f.org, "")
			if r.status != 200 || !strings.Contains(string(r.body), a.hash) {
				t.Fatalf("%s lacks acknowledged entry %s of %s", d.name, a.hash, a.node)
			}
		}
	}
	for _, d := range edges {
		d.p.stop(t)
		if r := canopy(t, "verify", "log", d.data, "--event", f.ev); r.code != 0 {
			t.Fatalf("verify log of %s: %s", d.name, r)
		}
	}
	hub.stop(t)
	t.Logf("converged: report %s, %d acknowledged entries on every edge", rep.Hash, len(acked))
}
