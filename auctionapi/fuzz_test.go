package auctionapi

import (
	"bytes"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"canopy/api"
	"canopy/auth"
)

// FuzzBidRequest feeds arbitrary bodies to the bid decoder and validator:
// each is either a valid bid (amount in range, a valid paddle) or a 4xx
// problem, never a panic.
func FuzzBidRequest(f *testing.F) {
	for _, s := range []string{`{"amount":100}`, `{"amount":100,"paddle":"floor-7"}`, `{"amount":-1}`, `{"amount":1e3}`,
		`{"amount":"100"}`, `{}`, `null`, `{"amount":100,"x":1}`, `{"amount":100}{}`, `{"paddle":"\u0000"}`, ``} {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	devs := map[bool]*auth.Device{
		true:  {Event: "e", Role: auth.RoleBidder, Name: "alice"},
		false: {Event: "e", Role: auth.RoleAuctioneer, Name: "desk"},
	}
	f.Fuzz(func(t *testing.T, body []byte, bidder bool) {
		r := httptest.NewRequest("POST", "/v1/lots/l/bids", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		var req BidRequest
		err := api.DecodeJSON(r, &req)
		var paddle string
		if err == nil {
			paddle, err = ValidateBid(&req, devs[bidder])
		}
		if err != nil {
			var p *api.Problem
			if !errors.As(err, &p) || p.Status < 400 || p.Status > 499 || p.Detail == "" {
				t.Fatalf("body %q: error %v is not a 4xx problem", body, err)
			}
			return
		}
		if req.Amount == nil || *req.Amount < 1 || *req.Amount > MaxAmount {
			t.Fatalf("body %q: accepted amount %v", body, req.Amount)
		}
		if bidder && paddle != "alice" || checkPaddle(paddle) != nil {
			t.Fatalf("body %q: accepted paddle %q", body, paddle)
		}
	})
}

// FuzzLotRequest does the same for lot openings.
func FuzzLotRequest(f *testing.F) {
	for _, s := range []string{`{"title":"a","start_price":1,"increment":1,"duration_s":5}`,
		`{"title":"a","start_price":1,"increment":1,"closes_at":"2030-01-01T00:00:00+01:00","soft_close_s":5,"extend_s":9}`,
		`{"id":"x y","title":"","start_price":0}`} {
		f.Add([]byte(s))
	}
	now := time.Date(2029, 6, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest("POST", "/v1/lots", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		var req LotRequest
		err := api.DecodeJSON(r, &req)
		var s lotSpec
		if err == nil {
			s, err = validateLot(&req, now)
		}
		if err != nil {
			var p *api.Problem
			if !errors.As(err, &p) || p.Status < 400 || p.Status > 499 {
				t.Fatalf("body %q: error %v is not a 4xx problem", body, err)
			}
			return
		}
		if s.start < 1 || s.increment < 1 || s.closesAt <= now.UnixMilli() || s.title == "" || s.extendMs < 0 {
			t.Fatalf("body %q: accepted %+v", body, s)
		}
	})
}
