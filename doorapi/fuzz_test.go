package doorapi_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"canopy/api"
	"canopy/checkin"
	"canopy/doorapi"
)

// FuzzCheckinRequest feeds arbitrary bodies to the check-in decoder and
// validator: they never panic, refuse with a problem, and whatever they
// accept is a well-formed scan.
func FuzzCheckinRequest(f *testing.F) {
	for _, s := range []string{
		`{"ticket":"v4.public.abc","door":"north","direction":"in"}`,
		`{"ticket":"x","door":"","direction":"out"}`,
		`{"ticket":"x","door":"a b","direction":"up"}`,
		`{"ticket":"x","door":"n","direction":"in","extra":1}`,
		`{"ticket":1}`, `null`, ``, `{`, `{"door":"ééé"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest("POST", "/v1/checkins", strings.NewReader(string(body)))
		r.Header.Set("Content-Type", "application/json")
		var req doorapi.CheckinRequest
		err := api.DecodeJSON(r, &req)
		if err == nil {
			err = doorapi.ValidateCheckin(&req, nil)
		}
		if err != nil {
			var p *api.Problem
			if !errors.As(err, &p) || p.Status < 400 || p.Status >= 500 {
				t.Fatalf("body %q: error %v is not a 4xx problem", body, err)
			}
			return
		}
		if req.Ticket == "" || len(req.Ticket) > doorapi.MaxTicketLen || !doorapi.ValidDoor(req.Door) ||
			(req.Direction != checkin.In && req.Direction != checkin.Out) {
			t.Fatalf("accepted an invalid request %+v", req)
		}
	})
}

func TestValidateCheckinRegistry(t *testing.T) {
	doors := map[string]bool{"north": true}
	if err := doorapi.ValidateCheckin(&doorapi.CheckinRequest{Ticket: "t", Door: "north", Direction: "in"}, doors); err != nil {
		t.Fatal(err)
	}
	err := doorapi.ValidateCheckin(&doorapi.CheckinRequest{Ticket: "t", Door: "south", Direction: "in"}, doors)
	var p *api.Problem
	if !errors.As(err, &p) || p.Type != api.TypeInvalidDoor || p.Status != http.StatusUnprocessableEntity {
		t.Fatalf("unknown door: %v", err)
	}
}
