package auctionapi

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"canopy/api"
	"canopy/auth"
)

// LotRequest is the body of POST /v1/lots. Exactly one of ClosesAt (RFC
// 3339 with an offset) and DurationS gives the close.
type LotRequest struct {
	ID         string `json:"id,omitempty"`
	Title      string `json:"title"`
	StartPrice *int64 `json:"start_price"`
	Increment  *int64 `json:"increment"`
	ClosesAt   string `json:"closes_at,omitempty"`
	DurationS  *int64 `json:"duration_s,omitempty"`
	// SoftCloseS: a bid in the last SoftCloseS seconds extends the close
	// to the bid's time + ExtendS (default: SoftCloseS).
	SoftCloseS *int64 `json:"soft_close_s,omitempty"`
	ExtendS    *int64 `json:"extend_s,omitempty"`
}

// BidRequest is the body of POST /v1/lots/{id}/bids. A bidder bids as its
// own device name and leaves Paddle out; an auctioneer names the floor
// bidder's paddle.
type BidRequest struct {
	Amount *int64 `json:"amount"`
	Paddle string `json:"paddle,omitempty"`

	// id is the bid ID chosen while forwarding the bid to the lot's home
	// edge; if the forward fails, the intent is recorded under it.
	id string
}

// CloseRequest is the (optional, empty) body of POST /v1/lots/{id}/close.
type CloseRequest struct{}

// lotSpec is a validated LotRequest.
type lotSpec struct {
	id, title             string
	start, increment      int64
	closesAt              int64 // Unix ms
	softCloseMs, extendMs int64
}

// ValidateLot checks a lot request at time now (the node's clock) and
// returns a 422 validation problem naming every invalid field.
func ValidateLot(req *LotRequest, now time.Time) error {
	_, err := validateLot(req, now)
	return err
}

func validateLot(req *LotRequest, now time.Time) (lotSpec, error) {
	var v api.Validation
	var s lotSpec
	if req.ID != "" {
		if err := checkID(req.ID); err != nil {
			v.Field("/id", "%s", err.Error())
		}
		s.id = req.ID
	}
	s.title = strings.TrimSpace(req.Title)
	switch n := utf8.RuneCountInString(s.title); {
	case !utf8.ValidString(req.Title):
		v.Field("/title", "must be valid UTF-8")
	case n == 0:
		v.Field("/title", "must not be empty")
	case n > MaxTitleLen:
		v.Field("/title", "must be at most %d characters, got %d", MaxTitleLen, n)
	case strings.IndexFunc(s.title, unicode.IsControl) >= 0:
		v.Field("/title", "must not contain control characters")
	}
	amount := func(ptr string, p *int64, what string) int64 {
		switch {
		case p == nil:
			v.Field(ptr, "is required: the %s in minor units", what)
		case *p < 1 || *p > MaxAmount:
			v.Field(ptr, "must be between 1 and %d minor units, got %d", int64(MaxAmount), *p)
		default:
			return *p
		}
		return 0
	}
	s.start = amount("/start_price", req.StartPrice, "starting price")
	s.increment = amount("/increment", req.Increment, "minimum increment")
	nowMs := now.UnixMilli()
	switch {
	case req.ClosesAt != "" && req.DurationS != nil:
		v.Field("/closes_at", "give either closes_at or duration_s, not both")
	case req.ClosesAt != "":
		t, err := time.Parse(time.RFC3339, req.ClosesAt)
		switch {
		case err != nil:
			v.Field("/closes_at", "must be an RFC 3339 time with an offset, e.g. 2026-12-05T21:30:00+01:00, got %q", req.ClosesAt)
		case !t.After(now):
			v.Field("/closes_at", "must be in the future; the node's clock reads %s", now.Format(time.RFC3339))
		case t.Sub(now) > MaxDuration:
			v.Field("/closes_at", "must be at most %s from now", MaxDuration)
		default:
			s.closesAt = t.UnixMilli()
		}
	case req.DurationS != nil:
		if d := *req.DurationS; d < 1 || d > int64(MaxDuration/time.Second) {
			v.Field("/duration_s", "must be between 1 and %d seconds, got %d", int64(MaxDuration/time.Second), d)
		} else {
			s.closesAt = nowMs + d*1000
		}
	default:
		v.Field("/closes_at", "is required (or duration_s): when the lot closes")
	}
	if req.SoftCloseS != nil {
		if sc := *req.SoftCloseS; sc < 0 || sc > MaxSoftCloseS {
			v.Field("/soft_close_s", "must be between 0 and %d seconds, got %d", MaxSoftCloseS, sc)
		} else {
			s.softCloseMs = sc * 1000
		}
	}
	if req.ExtendS != nil {
		switch e := *req.ExtendS; {
		case req.SoftCloseS == nil || *req.SoftCloseS == 0:
			v.Field("/extend_s", "needs soft_close_s: an extension only follows a bid in the soft-close window")
		case e < 1 || e > MaxExtendS:
			v.Field("/extend_s", "must be between 1 and %d seconds, got %d", MaxExtendS, e)
		default:
			s.extendMs = e * 1000
		}
	} else {
		s.extendMs = s.softCloseMs
	}
	return s, v.Err()
}

// ValidateBid checks a bid request from a device and returns the paddle
// the bid is for, or a 422 validation problem.
func ValidateBid(req *BidRequest, dev *auth.Device) (paddle string, err error) {
	var v api.Validation
	switch {
	case req.Amount == nil:
		v.Field("/amount", "is required: the bid in minor units")
	case *req.Amount < 1 || *req.Amount > MaxAmount:
		v.Field("/amount", "must be between 1 and %d minor units, got %d", int64(MaxAmount), *req.Amount)
	}
	switch {
	case dev == nil:
		v.Field("/paddle", "no device: bids need a device token")
	case dev.Role == auth.RoleBidder:
		paddle = dev.Name
		if req.Paddle != "" && req.Paddle != dev.Name {
			v.Field("/paddle", "a bidder bids as its own paddle %q; leave paddle out", dev.Name)
		}
	case req.Paddle == "":
		v.Field("/paddle", "is required when the %s bids: the floor bidder's paddle", dev.Role)
	default:
		paddle = req.Paddle
		if err := checkPaddle(paddle); err != nil {
			v.Field("/paddle", "%s", err.Error())
		}
	}
	if err := v.Err(); err != nil {
		return "", err
	}
	return paddle, nil
}

// checkID accepts 1 to 64 ASCII letters, digits, '-', '_' and '.'.
func checkID(id string) error {
	if id == "" || len(id) > MaxIDLen {
		return fmt.Errorf("must be 1 to %d characters, got %d", MaxIDLen, len(id))
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("may hold only letters, digits, '-', '_' and '.'; byte %d is %q", i, c)
		}
	}
	return nil
}

// checkPaddle accepts 1 to 64 printable characters.
func checkPaddle(p string) error {
	switch n := utf8.RuneCountInString(p); {
	case !utf8.ValidString(p):
		return fmt.Errorf("must be valid UTF-8")
	case n == 0 || n > MaxPaddleLen:
		return fmt.Errorf("must be 1 to %d characters, got %d", MaxPaddleLen, n)
	case strings.IndexFunc(p, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		return fmt.Errorf("must hold only printable characters")
	}
	return nil
}
