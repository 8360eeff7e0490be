package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"canopy/auth"
)

// POSOptions configures RunPOS.
type POSOptions struct {
	Dir         string
	Duration    time.Duration
	Concurrency []int // closed-loop runs
	Rate        int   // an open-loop run at this many paid orders/s (0: none)
}

// RunPOS starts an edge with a vendor and a catalog, then, for each
// concurrency and the open-loop rate, runs a load generator in a separate
// process that creates an order and pays it in full through the real HTTP
// API, and writes its JSON lines to w.
func RunPOS(ctx context.Context, w io.Writer, o POSOptions) error {
	dir, err := os.MkdirTemp(o.Dir, "canopy-bench-pos-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	e, err := StartEdge(ctx, dir, "bench-pos")
	if err != nil {
		return err
	}
	defer e.Close(context.Background())
	org, err := e.Token(auth.RoleOrganizer, "bench-organizer", "")
	if err != nil {
		return err
	}
	till, err := e.Token(auth.RolePOS, "bench-till", "")
	if err != nil {
		return err
	}
	c := Client(4)
	u := e.URL()
	if err := CallJSON(ctx, c, "PUT", u+"/v1/vendors/coffee", org, "", map[string]any{"name": "Coffee Cart", "active": true}, 200, nil); err != nil {
		return fmt.Errorf("set up vendor: %w", err)
	}
	if err := CallJSON(ctx, c, "PUT", u+"/v1/catalog/flat-white", org, "", map[string]any{
		"vendor": "coffee", "name": "Flat white", "price": 380, "tax_rate": 700, "tax_inclusive": true, "active": true,
	}, 200, nil); err != nil {
		return fmt.Errorf("set up catalog: %w", err)
	}
	enc := json.NewEncoder(w)
	run := func(args ...string) error {
		before := e.Journal.Stats()
		rs, err := RunChild(ctx, append([]string{"bench", "pos-load", "--url", u, "--token", till, "--duration", o.Duration.String()}, args...)...)
		if err != nil {
			return err
		}
		after := e.Journal.Stats()
		for _, r := range rs {
			if n := after.Commits - before.Commits; n > 0 {
				r.MeanBatch = round(float64(after.Entries-before.Entries) / float64(n))
			}
			enc.Encode(r)
		}
		return nil
	}
	for _, c := range o.Concurrency {
		if err := run("--concurrency", strconv.Itoa(c)); err != nil {
			return err
		}
	}
	if o.Rate > 0 {
		if err := run("--rate", strconv.Itoa(o.Rate), "--concurrency", "256"); err != nil {
			return err
		}
	}
	return nil
}

// POSLoad is the load generator's side: create an order of one flat white
// and pay it by card, over and over, and print one JSON result line.
func POSLoad(ctx context.Context, w io.Writer, url, token string, o LoadOptions) error {
	c := Client(max(o.Concurrency, 16))
	run := time.Now().UnixNano()
	op := func(ctx context.Context, worker, n int) error {
		var created struct {
			Order struct {
				ID     string `json:"id"`
				Totals struct {
					Total int64 `json:"total"`
				} `json:"totals"`
			} `json:"order"`
		}
		key := fmt.Sprintf("bench-%d-%d-%d", run, worker, n)
		if err := CallJSON(ctx, c, "POST", url+"/v1/orders", token, key+"-o",
			map[string]any{"lines": []map[string]any{{"sku": "flat-white", "qty": 1}}}, 201, &created); err != nil {
			return err
		}
		var paid struct {
			State string `json:"state"`
		}
		if err := CallJSON(ctx, c, "POST", url+"/v1/orders/"+created.Order.ID+"/payments", token, key+"-p",
			map[string]any{"method": "card", "amount": created.Order.Totals.Total, "reference": "bench"}, 201, &paid); err != nil {
			return err
		}
		if paid.State != "paid" {
			return fmt.Errorf("order %s is %s after paying in full", created.Order.ID, paid.State)
		}
		return nil
	}
	name := "pos.paid_order"
	if o.Rate > 0 {
		name = "pos.paid_order_open_loop"
	}
	r := Drive(ctx, name, o, op)
	return json.NewEncoder(w).Encode(r)
}
