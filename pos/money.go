// Package pos is the point-of-sale domain: vendors, their priced catalogs,
// orders, payments, refunds and stock, as the entry kinds that record them
// and the deterministic reducers that fold those entries into views.
// Amounts are integer minor units of the event's currency.
package pos

import (
	"errors"
	"fmt"
)

// MaxAmount bounds every amount and total (10^12 minor units), so sums of
// many lines can never overflow int64.
const MaxAmount = 1_000_000_000_000

// MaxQty bounds the quantity of one line.
const MaxQty = 100_000

// MaxTaxRate bounds a tax rate, in basis points (100% = 10000).
const MaxTaxRate = 10_000

// ErrAmount reports an amount outside 0..MaxAmount or a total that would
// exceed it.
var ErrAmount = errors.New("amount out of range")

// checkAmount returns an error unless 0 <= v <= MaxAmount.
func checkAmount(what string, v int64) error {
	if v < 0 || v > MaxAmount {
		return fmt.Errorf("%w: %s %d not in 0..%d", ErrAmount, what, v, int64(MaxAmount))
	}
	return nil
}

// mulDivRound returns round(a*b/c) for non-negative a, b and positive c,
// rounding half up, without overflow for a <= MaxAmount*MaxQty and
// b <= 2*MaxTaxRate.
func mulDivRound(a, b, c int64) int64 {
	// a*b fits: MaxAmount*MaxQty (1e17) * 2e4 would not, so split a.
	q, r := a/c, a%c
	return q*b + (r*b+c/2)/c
}

// LineTax returns the tax contained in (inclusive) or added to (exclusive)
// a line amount at rate basis points, rounded half up.
func LineTax(amount int64, rate int, inclusive bool) int64 {
	if rate == 0 || amount == 0 {
		return 0
	}
	if inclusive {
		return mulDivRound(amount, int64(rate), int64(10_000+rate))
	}
	return mulDivRound(amount, int64(rate), 10_000)
}
