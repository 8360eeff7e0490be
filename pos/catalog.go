package pos

import (
	"fmt"
	"regexp"
	"unicode/utf8"
)

// Entry kinds of the catalog. Their keys are "vendor:<id>" and "sku:<sku>".
const (
	KindVendorSet = "vendor.set/v1"
	KindSKUSet    = "sku.set/v1"
)

// idRE is the form of vendor ids and SKUs: 1 to 64 of [A-Za-z0-9._-].
var idRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// ValidID reports whether s is a valid vendor id or SKU.
func ValidID(s string) bool { return idRE.MatchString(s) }

// Vendor is a stall.
type Vendor struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Active bool   `json:"active"`
}

// SKU is one priced item of a vendor's catalog.
type SKU struct {
	SKU    string `json:"sku"`
	Vendor string `json:"vendor"`
	Name   string `json:"name"`
	// Price in minor units; with TaxInclusive it contains the tax.
	Price        int64 `json:"price"`
	TaxRate      int   `json:"tax_rate"` // basis points: 1900 = 19 %
	TaxInclusive bool  `json:"tax_inclusive"`
	TrackStock   bool  `json:"track_stock"`
	Active       bool  `json:"active"`
}

// FieldError names an invalid field by JSON pointer.
type FieldError struct {
	Pointer string
	Detail  string
}

func (f FieldError) Error() string { return f.Pointer + ": " + f.Detail }

// Invalid is a list of field errors; it is an error when non-empty.
type Invalid []FieldError

func (v Invalid) Error() string {
	if len(v) == 1 {
		return v[0].Error()
	}
	return fmt.Sprintf("%d invalid fields, first %s", len(v), v[0].Error())
}

func (v *Invalid) add(pointer, format string, args ...any) {
	*v = append(*v, FieldError{Pointer: pointer, Detail: fmt.Sprintf(format, args...)})
}

// Err returns v as an error, or nil if it is empty.
func (v Invalid) Err() error {
	if len(v) == 0 {
		return nil
	}
	return v
}

func checkName(v *Invalid, pointer, s string) {
	n := utf8.RuneCountInString(s)
	switch {
	case !utf8.ValidString(s):
		v.add(pointer, "must be valid UTF-8")
	case n == 0:
		v.add(pointer, "must not be empty")
	case n > 200:
		v.add(pointer, "must be at most 200 characters, got %d", n)
	}
}

// Validate checks a vendor.
func (x Vendor) Validate() error {
	var v Invalid
	if !ValidID(x.ID) {
		v.add("/id", "must be 1 to 64 of A-Z a-z 0-9 . _ -")
	}
	checkName(&v, "/name", x.Name)
	return v.Err()
}

// Validate checks a SKU.
func (x SKU) Validate() error {
	var v Invalid
	if !ValidID(x.SKU) {
		v.add("/sku", "must be 1 to 64 of A-Z a-z 0-9 . _ -")
	}
	if !ValidID(x.Vendor) {
		v.add("/vendor", "must be a vendor id")
	}
	checkName(&v, "/name", x.Name)
	if err := checkAmount("price", x.Price); err != nil {
		v.add("/price", "must be 0..%d minor units", int64(MaxAmount))
	}
	if x.TaxRate < 0 || x.TaxRate > MaxTaxRate {
		v.add("/tax_rate", "must be 0..%d basis points", MaxTaxRate)
	}
	return v.Err()
}
