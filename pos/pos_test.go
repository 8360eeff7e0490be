package pos

import "testing"

func TestLooksLikePAN(t *testing.T) {
	yes := []string{
		"4111111111111111", "4111 1111 1111 1111", "4111-1111-1111-1111",
		`{"reference":"card 5555555555554444 ok"}`, "378282246310005", "6011111111111117",
	}
	no := []string{
		"", "4111111111111112", "1234", "ref-2026-11-22", "order-000000000123",
		"9111111111111111", "41111111111111111111111", "4111  1111 1111 1111",
	}
	for _, s := range yes {
		if !LooksLikePAN(s) {
			t.Errorf("LooksLikePAN(%q) = false", s)
		}
	}
	for _, s := range no {
		if LooksLikePAN(s) {
			t.Errorf("LooksLikePAN(%q) = true", s)
		}
	}
}

func TestPriceLines(t *testing.T) {
	lines, tot, err := PriceLines([]Line{
		{SKU: "a", Qty: 2, UnitPrice: 1190, TaxRate: 1900, TaxInclusive: true},
		{SKU: "b", Qty: 1, UnitPrice: 1000, TaxRate: 700},
	}, 0, 50)
	if err != nil {
		t.Fatal(err)
	}
	if lines[0].Amount != 2380 || lines[0].Tax != 380 || lines[1].Amount != 1070 || lines[1].Tax != 70 {
		t.Fatalf("lines %+v", lines)
	}
	if tot.Items != 3450 || tot.Tax != 450 || tot.Tip != 50 || tot.Total != 3500 {
		t.Fatalf("totals %+v", tot)
	}
	_, tot, err = PriceLines([]Line{{SKU: "a", Qty: 1, UnitPrice: 1000, TaxRate: 1000, TaxInclusive: true}}, 500, 0)
	if err != nil || tot.Total != 500 || tot.Tax != 46 {
		t.Fatalf("discounted: %+v %v", tot, err)
	}
	for _, bad := range [][]Line{
		{{Qty: 0, UnitPrice: 1}},
		{{Qty: -1, UnitPrice: 1}},
		{{Qty: 1, UnitPrice: -5}},
		{{Qty: MaxQty, UnitPrice: MaxAmount}},
		{{Qty: 1, UnitPrice: MaxAmount}, {Qty: 1, UnitPrice: MaxAmount}},
	} {
		if _, _, err := PriceLines(bad, 0, 0); err == nil {
			t.Errorf("PriceLines(%+v) accepted", bad)
		}
	}
	if _, _, err := PriceLines([]Line{{Qty: 1, UnitPrice: 100}}, 101, 0); err == nil {
		t.Error("discount above items accepted")
	}
}

func TestCanMove(t *testing.T) {
	cases := []struct {
		from, to State
		ok       bool
	}{
		{StateOpen, StatePaid, true}, {StateOpen, StateCancelled, true}, {StateOpen, StateReady, false},
		{StatePaid, StateReady, true}, {StatePaid, StateOpen, false}, {StateReady, StatePaid, false},
		{StateFulfilled, StateRefunded, true}, {StateCancelled, StateOpen, false}, {StateRefunded, StatePaid, false},
	}
	for _, c := range cases {
		if CanMove(c.from, c.to) != c.ok {
			t.Errorf("CanMove(%s, %s) = %v", c.from, c.to, !c.ok)
		}
	}
}
