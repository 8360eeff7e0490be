package api

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestNotes(t *testing.T) {
	h := newHarness(t, false)
	first := h.do("POST", "/v1/log/notes", "tok-organizer", `{"text":"  doors open  "}`, "Idempotency-Key", "note-1")
	if first.status != 201 {
		t.Fatalf("status %d: %s", first.status, first.body)
	}
	var got struct {
		Text, Device, Role string
		Entry              struct{ Seq uint64 }
	}
	if err := json.Unmarshal(first.body, &got); err != nil {
		t.Fatal(err)
	}
	if got.Text != "doors open" || got.Role != "organizer" || got.Entry.Seq == 0 {
		t.Fatalf("note response %s", first.body)
	}
	again := h.do("POST", "/v1/log/notes", "tok-organizer", `{ "text" : "  doors open  " }`, "Idempotency-Key", "note-1")
	if again.status != 201 || !bytes.Equal(again.body, first.body) || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %d %s", again.status, again.body)
	}
	problemOf(t, h.do("POST", "/v1/log/notes", "tok-organizer", `{"text":"other"}`, "Idempotency-Key", "note-1"), 422, TypeIdempotencyReused)
	problemOf(t, h.do("POST", "/v1/log/notes", "tok-organizer", `{"text":"   "}`, "Idempotency-Key", "note-2"), 422, TypeValidationFailed)
	problemOf(t, h.do("POST", "/v1/log/notes", "tok-organizer", `{"text":"x"}`), 400, TypeIdempotencyNeeded)
	problemOf(t, h.do("POST", "/v1/log/notes", "tok-door", `{"text":"x"}`, "Idempotency-Key", "note-3"), 403, TypeForbiddenRole)
	if n := len(h.node.entries); n != 1 {
		t.Fatalf("%d entries appended, want 1", n)
	}
}
