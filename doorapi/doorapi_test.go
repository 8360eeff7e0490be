package doorapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"canopy/api"
	"canopy/auth"
	"canopy/checkin"
	"canopy/doorapi"
	"canopy/edge"
	"canopy/internal/testutil"
)

type harness struct {
	t     *testing.T
	ev    *testutil.Event
	e     *edge.Edge
	door  string // door token
	org   string // organizer token
	keyN  int
	keyMu sync.Mutex
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	ev := testutil.NewEvent(t, "door-market")
	e, err := edge.Open(context.Background(), ev.EdgeConfig(t, "edge-1", ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	return &harness{t: t, ev: ev, e: e, door: ev.ValidToken(t, auth.RoleDoor), org: ev.ValidToken(t, auth.RoleOrganizer)}
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (h *harness) do(method, path, token, body string, hdr ...string) reply {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.e.URL()+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Error(err)
		return reply{}
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return reply{res.StatusCode, res.Header, b}
}

func (h *harness) key() string {
	h.keyMu.Lock()
	defer h.keyMu.Unlock()
	h.keyN++
	return fmt.Sprintf("k-%d", h.keyN)
}

type answer struct {
	Accepted bool                `json:"accepted"`
	Reason   string              `json:"reason"`
	Ticket   *doorapi.TicketInfo `json:"ticket"`
	Door     string              `json:"door"`
	Dir      string              `json:"direction"`
	Entry    struct {
		Seq uint64 `json:"seq"`
	} `json:"entry"`
}

func scanBody(ticket, door, dir string) string {
	b, _ := json.Marshal(map[string]string{"ticket": ticket, "door": door, "direction": dir})
	return string(b)
}

// scan posts a scan and decodes the 200 answer.
func (h *harness) scan(ticket, door, dir string) answer {
	h.t.Helper()
	r := h.do("POST", "/v1/checkins", h.door, scanBody(ticket, door, dir), "Idempotency-Key", h.key())
	if r.status != 200 {
		h.t.Fatalf("scan: %d %s", r.status, r.body)
	}
	var a answer
	if err := json.Unmarshal(r.body, &a); err != nil {
		h.t.Fatal(err)
	}
	return a
}

func (h *harness) head() uint64 {
	h.t.Helper()
	seq, _, err := h.e.Store.Head(context.Background(), h.ev.Event.Slug, h.e.Journal.Node())
	if err != nil {
		h.t.Fatal(err)
	}
	return seq
}

type ticketOpt func(*auth.Ticket)

func (h *harness) ticket(opts ...ticketOpt) (string, auth.Ticket) {
	h.t.Helper()
	now := time.Now()
	t := auth.Ticket{ID: auth.NewTicketID(), Event: h.ev.Event.Slug, Type: "GA",
		ValidFrom: now.Add(-time.Hour), ValidUntil: now.Add(time.Hour)}
	for _, o := range opts {
		o(&t)
	}
	tok, err := auth.IssueTicket(h.ev.Key, t)
	if err != nil {
		h.t.Fatal(err)
	}
	return tok, t
}

func reentry(t *auth.Ticket) { t.Reentry = true }

func wantProblem(t *testing.T, r reply, status int, typ string) {
	t.Helper()
	if r.status != status || r.header.Get("Content-Type") != api.ContentTypeProblem {
		t.Fatalf("got %d %s %s, want %d %s", r.status, r.header.Get("Content-Type"), r.body, status, typ)
	}
	var p struct {
		Type   string `json:"type"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(r.body, &p); err != nil || p.Type != typ || p.Detail == "" {
		t.Fatalf("problem %s, want type %s", r.body, typ)
	}
}

func TestScanReasonsExact(t *testing.T) {
	h := newHarness(t)
	now := time.Now()
	other := testutil.NewEvent(t, "door-market") // same slug, another key

	ga, gaT := h.ticket()
	a := h.scan(ga, "north", "in")
	if !a.Accepted || a.Reason != "" || a.Ticket == nil || a.Ticket.ID != gaT.ID || a.Ticket.Type != "GA" || a.Ticket.Reentry || a.Door != "north" || a.Dir != "in" || a.Entry.Seq == 0 {
		t.Fatalf("first scan in: %+v", a)
	}
	check := func(name, tok, door, dir, reason string, withTicket bool) {
		t.Helper()
		a := h.scan(tok, door, dir)
		if a.Accepted || a.Reason != reason {
			t.Errorf("%s: accepted=%v reason=%q, want rejected %q", name, a.Accepted, a.Reason, reason)
		}
		if (a.Ticket != nil) != withTicket {
			t.Errorf("%s: ticket in answer %+v, want present=%v", name, a.Ticket, withTicket)
		}
	}
	check("in while inside", ga, "south", "in", checkin.ReasonAlreadyInside, true)
	if a := h.scan(ga, "south", "out"); !a.Accepted {
		t.Fatalf("out: %+v", a)
	}
	check("re-entry without re-entry", ga, "north", "in", checkin.ReasonNoReentry, true)
	check("out while outside", ga, "north", "out", checkin.ReasonNotInside, true)
	never, _ := h.ticket()
	check("out never in", never, "north", "out", checkin.ReasonNotInside, true)

	expired, _ := h.ticket(func(t *auth.Ticket) { t.ValidFrom, t.ValidUntil = now.Add(-3*time.Hour), now.Add(-2*time.Hour) })
	check("expired", expired, "north", "in", checkin.ReasonExpired, false)
	early, _ := h.ticket(func(t *auth.Ticket) { t.ValidFrom, t.ValidUntil = now.Add(2*time.Hour), now.Add(3*time.Hour) })
	check("not yet valid", early, "north", "in", checkin.ReasonNotYetValid, false)

	forged, err := auth.IssueTicket(other.Key, auth.Ticket{ID: "forged1", Event: h.ev.Event.Slug, Type: "GA", ValidFrom: now.Add(-time.Hour), ValidUntil: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	check("forged", forged, "north", "in", checkin.ReasonInvalidSignature, false)
	fresh, _ := h.ticket()
	// Cut by whole base64 quanta the payload still decodes, and the
	// signature does not verify; a cut that breaks the encoding is malformed.
	check("truncated", fresh[:len(fresh)-4], "north", "in", checkin.ReasonInvalidSignature, false)
	for cut := 1; cut <= 4; cut++ {
		if (len(fresh)-len("v4.public.")-cut)%4 == 1 { // no base64 text has this length
			check("truncated mid-quantum", fresh[:len(fresh)-cut], "north", "in", checkin.ReasonMalformed, false)
		}
	}
	check("garbage", "not-a-ticket", "north", "in", checkin.ReasonMalformed, false)
	check("a device token", h.door, "north", "in", checkin.ReasonMalformed, false)
	wrongEvent, err := auth.IssueTicket(h.ev.Key, auth.Ticket{ID: "we1", Event: "another-market", Type: "GA", ValidFrom: now.Add(-time.Hour), ValidUntil: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	check("wrong event", wrongEvent, "north", "in", checkin.ReasonWrongEvent, false)
	vip, _ := h.ticket(func(t *auth.Ticket) { t.Doors = []string{"vip", "east"} })
	check("wrong door", vip, "north", "in", checkin.ReasonWrongDoor, true)
	if a := h.scan(vip, "east", "in"); !a.Accepted {
		t.Fatalf("listed door: %+v", a)
	}
}

func TestReentryAfterOut(t *testing.T) {
	h := newHarness(t)
	tok, _ := h.ticket(reentry)
	for i, step := range []struct {
		dir    string
		ok     bool
		reason string
	}{{"in", true, ""}, {"out", true, ""}, {"in", true, ""}, {"in", false, checkin.ReasonAlreadyInside}, {"out", true, ""}, {"out", false, checkin.ReasonNotInside}, {"in", true, ""}} {
		a := h.scan(tok, "main", step.dir)
		if a.Accepted != step.ok || a.Reason != step.reason || !a.Ticket.Reentry {
			t.Fatalf("step %d %s: %+v, want accepted=%v reason=%q", i, step.dir, a, step.ok, step.reason)
		}
	}
}

func TestEveryScanRecorded(t *testing.T) {
	h := newHarness(t)
	tok, _ := h.ticket()
	scans := []struct{ tok, dir string }{{tok, "in"}, {tok, "in"}, {"garbage", "in"}, {tok, "out"}, {tok, "out"}}
	for i, s := range scans {
		before := h.head()
		h.scan(s.tok, "main", s.dir)
		if after := h.head(); after != before+1 {
			t.Fatalf("scan %d: head %d -> %d, want one entry more", i, before, after)
		}
	}
	// Every recorded scan is a checkin.scanned entry naming its ticket.
	es, err := h.e.Store.EntriesByKey(context.Background(), h.ev.Event.Slug, "ticket:"+doorapi.UnverifiedID("garbage"))
	if err != nil || len(es) != 1 || es[0].Entry.Kind != checkin.KindScanned {
		t.Fatalf("rejected scan of an invalid ticket: %v %v", es, err)
	}
}

func TestConcurrentScansAdmitOnce(t *testing.T) {
	h := newHarness(t)
	tok, tk := h.ticket(reentry)
	const n = 50
	var wg sync.WaitGroup
	results := make([]answer, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			door := []string{"north", "south"}[i%2]
			r := h.do("POST", "/v1/checkins", h.door, scanBody(tok, door, "in"), "Idempotency-Key", fmt.Sprintf("c-%d", i))
			if r.status != 200 {
				t.Errorf("scan %d: %d %s", i, r.status, r.body)
				return
			}
			json.Unmarshal(r.body, &results[i])
		}(i)
	}
	wg.Wait()
	admitted := 0
	for _, a := range results {
		if a.Accepted {
			admitted++
		} else if a.Reason != checkin.ReasonAlreadyInside {
			t.Errorf("rejected with %q", a.Reason)
		}
	}
	if admitted != 1 {
		t.Fatalf("admitted %d times, want once", admitted)
	}
	row, err := h.e.Store.View(context.Background(), h.ev.Event.Slug, checkin.View, tk.ID)
	if err != nil {
		t.Fatal(err)
	}
	var tr checkin.Ticket
	json.Unmarshal(row, &tr)
	if !tr.Inside || tr.Admissions != 1 || len(tr.Conflicts) != 0 || tr.Rejected != n-1 {
		t.Fatalf("ticket row %+v", tr)
	}
}

func TestOccupancyPerDoor(t *testing.T) {
	h := newHarness(t)
	occ := func() checkin.Occupancy {
		t.Helper()
		r := h.do("GET", "/v1/occupancy", h.door, "")
		if r.status != 200 {
			t.Fatalf("occupancy: %d %s", r.status, r.body)
		}
		var o checkin.Occupancy
		json.Unmarshal(r.body, &o)
		return o
	}
	if o := occ(); o.Inside != 0 || len(o.Doors) != 0 {
		t.Fatalf("empty occupancy %+v", o)
	}
	var toks []string
	for i := 0; i < 5; i++ {
		tok, _ := h.ticket(reentry)
		toks = append(toks, tok)
	}
	h.scan(toks[0], "north", "in")
	h.scan(toks[1], "north", "in")
	h.scan(toks[2], "south", "in")
	h.scan(toks[3], "south", "in")
	h.scan(toks[3], "south", "out")
	h.scan(toks[4], "garbage-door", "out") // rejected: not inside
	h.scan("garbage", "north", "in")
	o := occ()
	if o.Inside != 3 || o.Doors["north"] != 2 || o.Doors["south"] != 1 || len(o.Doors) != 2 {
		t.Fatalf("occupancy %+v, want 3 inside: north 2, south 1", o)
	}
	for _, tok := range []string{h.org, h.ev.ValidToken(t, auth.RoleAdmin)} {
		if r := h.do("GET", "/v1/occupancy", tok, ""); r.status != 200 {
			t.Fatalf("occupancy as another role: %d", r.status)
		}
	}
	wantProblem(t, h.do("GET", "/v1/occupancy", h.ev.ValidToken(t, auth.RolePOS), ""), 403, api.TypeForbiddenRole)
}

func TestRevokedTicketRejectedAtOnce(t *testing.T) {
	h := newHarness(t)
	tok, tk := h.ticket(reentry)
	if a := h.scan(tok, "main", "in"); !a.Accepted {
		t.Fatal(a)
	}
	h.scan(tok, "main", "out")
	r := h.do("POST", "/v1/revocations", h.org, `{"what":"ticket","id":"`+tk.ID+`","reason":"refunded"}`, "Idempotency-Key", "rv1")
	if r.status != 201 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if a := h.scan(tok, "main", "in"); a.Accepted || a.Reason != checkin.ReasonRevoked {
		t.Fatalf("after revocation: %+v", a)
	}
	// A revoked ticket on a door it is not allowed through is still "revoked".
	list := h.do("GET", "/v1/revocations", h.org, "")
	var l doorapi.RevocationList
	if err := json.Unmarshal(list.body, &l); err != nil || list.status != 200 || len(l.Revocations) != 1 ||
		l.Revocations[0].ID != tk.ID || l.Revocations[0].What != "ticket" || l.Revocations[0].Reason != "refunded" || l.Revocations[0].Device != "organizer-device" {
		t.Fatalf("list: %d %s", list.status, list.body)
	}
	wantProblem(t, h.do("GET", "/v1/revocations", h.door, ""), 403, api.TypeForbiddenRole)
}

// routes lists one call of every door route, and two others.
var routes = []struct{ method, path, body string }{
	{"POST", "/v1/checkins", `{"ticket":"x","door":"main","direction":"in"}`},
	{"GET", "/v1/occupancy", ""},
	{"POST", "/v1/revocations", `{"what":"node","id":"00112233445566778899aabbccddeeff"}`},
	{"GET", "/v1/revocations", ""},
	{"GET", "/v1/log/entries", ""},
	{"POST", "/v1/log/notes", `{"text":"hello"}`},
}

func TestRevokedTokenRefusedEverywhere(t *testing.T) {
	h := newHarness(t)
	victim := h.ev.Token(t, auth.RoleOrganizer, "lost-phone", time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	v, err := auth.NewVerifier(h.ev.Event, nil).VerifyDevice(victim)
	if err != nil {
		t.Fatal(err)
	}
	if r := h.do("GET", "/v1/revocations", victim, ""); r.status != 200 {
		t.Fatalf("before revocation: %d %s", r.status, r.body)
	}
	r := h.do("POST", "/v1/revocations", h.org, `{"what":"token","id":"`+v.TokenID+`","reason":"phone lost"}`, "Idempotency-Key", "rv-tok")
	if r.status != 201 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	before := h.head()
	for i, rt := range routes {
		r := h.do(rt.method, rt.path, victim, rt.body, "Idempotency-Key", fmt.Sprintf("v-%d", i))
		wantProblem(t, r, 401, api.TypeTokenRevoked)
	}
	if after := h.head(); after != before {
		t.Fatalf("a revoked token appended %d entries", after-before)
	}
	// Other tokens still work.
	if r := h.do("GET", "/v1/revocations", h.org, ""); r.status != 200 {
		t.Fatalf("another organizer token: %d", r.status)
	}
}

func TestBadRequestsAppendNothing(t *testing.T) {
	h := newHarness(t)
	tok, _ := h.ticket()
	long := strings.Repeat("a", doorapi.MaxTicketLen+1)
	cases := []struct {
		name, body string
		status     int
		typ        string
	}{
		{"missing ticket", `{"door":"main","direction":"in"}`, 422, api.TypeTicketMissing},
		{"missing door", `{"ticket":"` + tok + `","direction":"in"}`, 422, api.TypeInvalidDoor},
		{"empty door", scanBody(tok, "", "in"), 422, api.TypeInvalidDoor},
		{"bad door", scanBody(tok, "north gate", "in"), 422, api.TypeInvalidDoor},
		{"long door", scanBody(tok, strings.Repeat("d", 33), "in"), 422, api.TypeInvalidDoor},
		{"missing direction", `{"ticket":"` + tok + `","door":"main"}`, 422, api.TypeInvalidDirection},
		{"bad direction", scanBody(tok, "main", "sideways"), 422, api.TypeInvalidDirection},
		{"ticket over 1 KiB", scanBody(long, "main", "in"), 422, api.TypeTicketTooLong},
		{"unknown field", `{"ticket":"x","door":"main","direction":"in","vip":true}`, 400, api.TypeUnknownField},
		{"wrong type", `{"ticket":1,"door":"main","direction":"in"}`, 400, api.TypeWrongFieldType},
		{"not json", `{"ticket":`, 400, api.TypeMalformedJSON},
		{"body too large", scanBody(strings.Repeat("a", 8<<10), "main", "in"), 413, api.TypeBodyTooLarge},
	}
	before := h.head()
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantProblem(t, h.do("POST", "/v1/checkins", h.door, c.body, "Idempotency-Key", fmt.Sprintf("bad-%d", i)), c.status, c.typ)
		})
	}
	wantProblem(t, h.do("POST", "/v1/checkins", h.door, scanBody(tok, "main", "in")), 400, api.TypeIdempotencyNeeded)
	wantProblem(t, h.do("POST", "/v1/checkins", h.ev.ValidToken(t, auth.RolePOS), scanBody(tok, "main", "in"), "Idempotency-Key", "pos"), 403, api.TypeForbiddenRole)
	wantProblem(t, h.do("POST", "/v1/checkins", h.ev.ValidToken(t, auth.RoleAdmin), scanBody(tok, "main", "in"), "Idempotency-Key", "adm"), 403, api.TypeForbiddenRole)
	revs := []struct{ name, body string }{
		{"unknown what", `{"what":"vendor","id":"x"}`},
		{"missing what", `{"id":"x"}`},
		{"empty id", `{"what":"ticket","id":""}`},
		{"id with space", `{"what":"ticket","id":"a b"}`},
		{"bad node id", `{"what":"node","id":"xyz"}`},
		{"long reason", `{"what":"ticket","id":"t1","reason":"` + strings.Repeat("r", 501) + `"}`},
	}
	for i, c := range revs {
		t.Run(c.name, func(t *testing.T) {
			wantProblem(t, h.do("POST", "/v1/revocations", h.org, c.body, "Idempotency-Key", fmt.Sprintf("rbad-%d", i)), 422, api.TypeValidationFailed)
		})
	}
	wantProblem(t, h.do("POST", "/v1/revocations", h.door, `{"what":"ticket","id":"t1"}`, "Idempotency-Key", "door-rev"), 403, api.TypeForbiddenRole)
	if after := h.head(); after != before {
		t.Fatalf("bad requests appended %d entries", after-before)
	}
}

func TestScanReplay(t *testing.T) {
	h := newHarness(t)
	tok, _ := h.ticket()
	body := scanBody(tok, "main", "in")
	first := h.do("POST", "/v1/checkins", h.door, body, "Idempotency-Key", "scan-1")
	if first.status != 200 {
		t.Fatalf("%d %s", first.status, first.body)
	}
	head := h.head()
	again := h.do("POST", "/v1/checkins", h.door, body, "Idempotency-Key", "scan-1")
	if again.status != 200 || !bytes.Equal(again.body, first.body) || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %d %s (first %s)", again.status, again.body, first.body)
	}
	if h.head() != head {
		t.Fatal("a replay appended an entry")
	}
	var a answer
	json.Unmarshal(again.body, &a)
	if !a.Accepted {
		t.Fatalf("replayed answer %s is not the first (accepted)", again.body)
	}
	// The same scan with a new key is a new scan: already inside.
	if a := h.scan(tok, "main", "in"); a.Accepted || a.Reason != checkin.ReasonAlreadyInside {
		t.Fatalf("%+v", a)
	}
	wantProblem(t, h.do("POST", "/v1/checkins", h.door, scanBody(tok, "main", "out"), "Idempotency-Key", "scan-1"), 422, api.TypeIdempotencyReused)
}
