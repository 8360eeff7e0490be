// Package apicontract holds tests to the OpenAPI document: an HTTP client
// whose every request and response is validated against the document
// (github.com/getkin/kin-openapi), recording which documented operations
// and status codes were exercised.
package apicontract

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sort"
	"strconv"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// Checker validates traffic and records coverage. It is safe for
// concurrent use.
type Checker struct {
	doc    *openapi3.T
	router routers.Router

	mu     sync.Mutex
	seen   map[string]int
	errors []error
}

// New loads and validates the document.
func New(spec []byte) (*Checker, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(spec)
	if err != nil {
		return nil, fmt.Errorf("apicontract: load: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("apicontract: the document is invalid: %w", err)
	}
	doc.Servers = nil // match any host: tests serve on 127.0.0.1:0
	r, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("apicontract: router: %w", err)
	}
	return &Checker{doc: doc, router: r, seen: map[string]int{}}, nil
}

// Client returns an HTTP client whose traffic is checked.
func (c *Checker) Client() *http.Client {
	return &http.Client{Transport: transport{c: c, next: http.DefaultTransport}}
}

type transport struct {
	c    *Checker
	next http.RoundTripper
}

func (t transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		req.Body.Close()
		body = b
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	route, params, rerr := t.c.router.FindRoute(req)
	resp, err := t.next.RoundTrip(req)
	if err != nil || rerr != nil {
		if rerr != nil && err == nil {
			t.c.fail(fmt.Errorf("%s %s: not in the document: %v", req.Method, req.URL.Path, rerr))
		}
		return resp, err
	}
	// Streams (server-sent events) are checked by status and headers only.
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "text/event-stream" {
		t.c.record(route, resp.StatusCode)
		return resp, nil
	}
	respBody, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(respBody))

	vreq := req.Clone(context.Background())
	vreq.Body = io.NopCloser(bytes.NewReader(body))
	in := &openapi3filter.RequestValidationInput{
		Request: vreq, PathParams: params, Route: route,
		Options: &openapi3filter.Options{
			AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
			MultiError:         true,
		},
	}
	// Requests are validated only where the server accepted them: a test
	// that sends bad input on purpose expects a 4xx.
	if resp.StatusCode < 400 {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			t.c.fail(fmt.Errorf("%s %s: request (answered %d) does not match the document: %v", req.Method, req.URL.Path, resp.StatusCode, err))
		}
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(respBody)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.c.fail(fmt.Errorf("%s %s: response %d does not match the document: %v\n%s", req.Method, req.URL.Path, resp.StatusCode, err, truncate(respBody)))
	}
	t.c.record(route, resp.StatusCode)
	return resp, nil
}

func truncate(b []byte) []byte {
	if len(b) > 600 {
		return append(b[:600:600], "…"...)
	}
	return b
}

func (c *Checker) record(route *routers.Route, status int) {
	c.mu.Lock()
	c.seen[fmt.Sprintf("%s %s %d", route.Method, route.Path, status)]++
	c.mu.Unlock()
}

func (c *Checker) fail(err error) {
	c.mu.Lock()
	c.errors = append(c.errors, err)
	c.mu.Unlock()
}

// Errors returns every mismatch found so far.
func (c *Checker) Errors() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]error(nil), c.errors...)
}

// Documented lists every "METHOD /path STATUS" the document declares
// (the "default" response excluded).
func (c *Checker) Documented() []string {
	var out []string
	for path, item := range c.doc.Paths.Map() {
		for method, op := range item.Operations() {
			for code := range op.Responses.Map() {
				if _, err := strconv.Atoi(code); err == nil {
					out = append(out, fmt.Sprintf("%s %s %s", method, path, code))
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// Missing lists documented operation/status pairs no request produced.
func (c *Checker) Missing() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, d := range c.Documented() {
		if c.seen[d] == 0 {
			out = append(out, d)
		}
	}
	return out
}

// Undocumented lists operation/status pairs seen that the document does
// not declare (ValidateResponse reports them as errors too).
func (c *Checker) Undocumented() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	doc := map[string]bool{}
	for _, d := range c.Documented() {
		doc[d] = true
	}
	var out []string
	for s := range c.seen {
		if !doc[s] {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}
