package simulate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// problem is the part of an RFC 9457 problem the devices read.
type problem struct {
	Type   string `json:"type"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

// answer is a response as a device sees it.
type answer struct {
	status   int
	body     []byte
	problem  *problem // set for application/problem+json answers
	replayed bool     // Idempotent-Replayed: true
}

// short names a problem type without its urn:canopy:problem: prefix.
func short(typ string) string { return strings.TrimPrefix(typ, "urn:canopy:problem:") }

// kind is the answer's problem kind ("" when it is not a problem).
func (a *answer) kind() string {
	if a.problem == nil {
		return ""
	}
	return short(a.problem.Type)
}

// call is one request by a device.
type call struct {
	device string
	token  string
	edge   int // index of the edge it goes to
	method string
	path   string
	idem   string // Idempotency-Key; "" for none
	body   any    // encoded as JSON; nil: no body
}

func (c *call) name() string { return c.method + " " + c.path }

// do sends c and reads the answer. The request outlives ctx's cancellation
// (a device finishes what it started when the run stops) but not
// requestTimeout. A transport error is counted as an error here and
// returned as ok false.
func (s *Sim) do(ctx context.Context, c call) (a answer, ok bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), requestTimeout)
	defer cancel()
	var rd io.Reader
	if c.body != nil {
		b, err := json.Marshal(c.body)
		if err != nil {
			s.fail(Failure{Device: c.device, Call: c.name(), Type: "encode", Detail: err.Error()})
			return a, false
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, s.urls[c.edge]+c.path, rd)
	if err != nil {
		s.fail(Failure{Device: c.device, Call: c.name(), Type: "request", Detail: err.Error()})
		return a, false
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if c.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.idem != "" {
		req.Header.Set("Idempotency-Key", c.idem)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.fail(Failure{Device: c.device, Call: c.name(), Type: "transport", Detail: err.Error()})
		return a, false
	}
	defer resp.Body.Close()
	a.status = resp.StatusCode
	a.replayed = resp.Header.Get("Idempotent-Replayed") == "true"
	if a.body, err = io.ReadAll(io.LimitReader(resp.Body, 8<<20)); err != nil {
		s.fail(Failure{Device: c.device, Call: c.name(), Status: a.status, Type: "transport", Detail: "reading the answer: " + err.Error()})
		return a, false
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
		var p problem
		if err := json.Unmarshal(a.body, &p); err != nil {
			s.fail(Failure{Device: c.device, Call: c.name(), Status: a.status, Type: "bad-problem", Detail: err.Error()})
			return a, false
		}
		a.problem = &p
	}
	return a, true
}

// expect sends c and requires status want with a JSON body decoded into
// out (if not nil). Anything else is counted as an error. A write that
// succeeded is counted as one appended entry.
func (s *Sim) expect(ctx context.Context, c call, want int, out any) bool {
	a, ok := s.do(ctx, c)
	if !ok {
		return false
	}
	if a.status != want {
		s.unexpected(c, &a, fmt.Sprintf("want status %d", want))
		return false
	}
	if c.method != http.MethodGet {
		s.stats.entry(a.replayed)
	}
	if out != nil {
		if err := json.Unmarshal(a.body, out); err != nil {
			s.fail(Failure{Device: c.device, Call: c.name(), Status: a.status, Type: "bad-json", Detail: err.Error()})
			return false
		}
	}
	return true
}

// unexpected counts an answer the device did not expect.
func (s *Sim) unexpected(c call, a *answer, why string) {
	f := Failure{Device: c.device, Call: c.name(), Status: a.status, Type: "unexpected-answer"}
	if a.problem != nil {
		f.Type, f.Detail = a.kind(), a.problem.Detail
	} else {
		body := string(a.body)
		if len(body) > 300 {
			body = body[:300] + "…"
		}
		f.Detail = why + ": " + body
	}
	s.fail(f)
}

// mismatch counts a well-formed answer that says something other than what
// the device's model of the event predicted.
func (s *Sim) mismatch(c call, format string, args ...any) {
	s.fail(Failure{Device: c.device, Call: c.name(), Type: "wrong-outcome", Detail: fmt.Sprintf(format, args...)})
}

func (s *Sim) fail(f Failure) {
	if s.stats.fail(f) && s.cfg.OnError != nil {
		s.cfg.OnError(f)
	}
}

// idem returns an Idempotency-Key unique to this run.
func (s *Sim) idem(device string, n int, step string) string {
	return fmt.Sprintf("sim-%s-%s-%d-%s", s.run, device, n, step)
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
// Devices use it to pace themselves, never to wait for each other.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
