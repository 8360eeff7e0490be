package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"canopy/ledger"
)

// NoteKind is the kind of an organizer's note in the log: a signed,
// timestamped remark such as "doors opened" or "drill started".
const NoteKind = "log.note/v1"

// MaxNoteLen bounds a note's text, in characters.
const MaxNoteLen = 2000

// NoteRequest is the body of POST /v1/log/notes.
type NoteRequest struct {
	Text string `json:"text"`
}

// noteBody is what a note entry carries besides the idempotency members.
type noteBody struct {
	Text   string `json:"text"`
	Device string `json:"device"`
	Role   string `json:"role"`
}

// NoteResponse is the response to a note: the note as written.
type NoteResponse struct {
	Text   string     `json:"text"`
	Device string     `json:"device"`
	Role   string     `json:"role"`
	At     ledger.HLC `json:"hlc"`
}

func (s *Server) registerNotes() {
	HandleMutation(s, MutationRoute[NoteRequest]{
		Pattern: "POST /v1/log/notes",
		Roles:   auditRoles,
		Prepare: func(r *http.Request, req *NoteRequest) (Mutation, error) {
			var v Validation
			text := strings.TrimSpace(req.Text)
			switch {
			case text == "":
				v.Field("/text", "must not be empty")
			case utf8.RuneCountInString(text) > MaxNoteLen:
				v.Field("/text", "must be at most %d characters, got %d", MaxNoteLen, utf8.RuneCountInString(text))
			}
			if err := v.Err(); err != nil {
				return Mutation{}, err
			}
			d := DeviceFrom(r.Context())
			return Mutation{
				Kind: NoteKind,
				Key:  "note",
				Body: noteBody{Text: text, Device: d.Name, Role: string(d.Role)},
			}, nil
		},
		Render: func(e *ledger.Entry) (int, any, error) {
			var b noteBody
			if err := json.Unmarshal(e.Body, &b); err != nil {
				return 0, nil, fmt.Errorf("note entry %d: %w", e.Seq, err)
			}
			return http.StatusCreated, NoteResponse{Text: b.Text, Device: b.Device, Role: b.Role, At: e.HLC}, nil
		},
	})
}
