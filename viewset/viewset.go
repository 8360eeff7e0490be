// Package viewset lists every reducer a Canopy node maintains, in one
// place, so every node (and every verifier) derives the same views.
package viewset

import (
	"canopy/auction"
	"canopy/checkin"
	"canopy/pos"
	"canopy/revocation"
	"canopy/views"
)

// All returns the full set: idempotency, point of sale, doors, auctions,
// revocations.
func All() *views.Set {
	rs := []views.Reducer{views.Idempotency{}}
	rs = append(rs, pos.Reducers()...)
	rs = append(rs, checkin.Reducer{}, auction.Reducer{}, revocation.Reducer{})
	s, err := views.NewSet(rs...)
	if err != nil {
		panic(err) // two reducers share a view name: a programming error caught by the tests
	}
	return s
}
