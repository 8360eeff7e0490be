package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"canopy/auth"
	"canopy/edge"
	"canopy/salesreport"
	"canopy/store/sqlite"
)

func init() {
	register(command{
		name:    "report sales",
		summary: "the end-of-day sales report (Z-report) per vendor and device, from a node's API or data directory",
		run:     runReportSales,
	})
}

const reportSalesUsage = `(--url URL [--token T] | --dir DATA --event EVENT) [--from T] [--to T] [--json]

Online, the report is read from a node's device API (GET ` + salesreport.Path + `) with an
organizer or admin token from --token or CANOPY_TOKEN. Offline, it is computed
from a node's data directory (holding ` + edge.StoreFile + `, opened read-only) and
the event's event.json. --from and --to are RFC 3339 times with an offset
(e.g. 2026-05-01T18:00:00+02:00); they default to the event's start and end.`

func runReportSales(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "report sales", reportSalesUsage)
	base := fs.String("url", "", "a node's device API, e.g. http://127.0.0.1:8080")
	token := fs.String("token", "", "organizer or admin device token for --url (default $CANOPY_TOKEN)")
	dir := fs.String("dir", "", "a node's data directory, to compute the report offline")
	eventPath := fs.String("event", "", "the event's event.json or its directory (with --dir)")
	from := fs.String("from", "", "start of the range, inclusive (RFC 3339 with offset; default the event's start)")
	to := fs.String("to", "", "end of the range, exclusive (RFC 3339 with offset; default the event's end)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	for name, v := range map[string]string{"from": *from, "to": *to} {
		if v == "" {
			continue
		}
		if _, err := time.Parse(time.RFC3339, v); err != nil {
			return usageErrorf("--%s must be an RFC 3339 time with an offset, e.g. 2026-05-01T18:00:00+02:00, got %q", name, v)
		}
	}
	var (
		rep salesreport.Report
		raw []byte
		err error
	)
	switch {
	case *base != "" && *dir != "":
		return usageErrorf("give either --url or --dir, not both")
	case *base != "":
		if *eventPath != "" {
			return usageErrorf("--event goes with --dir; with --url the node knows its event")
		}
		tok := *token
		if tok == "" {
			tok = os.Getenv("CANOPY_TOKEN")
		}
		if tok == "" {
			return usageErrorf("--url needs an organizer or admin token (--token or CANOPY_TOKEN)")
		}
		raw, err = fetchSalesReport(ctx, *base, tok, *from, *to)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(raw, &rep); err != nil {
			return fmt.Errorf("the report from %s does not decode: %w", *base, err)
		}
	case *dir != "":
		if *eventPath == "" {
			return usageErrorf("--dir needs --event (the event's event.json)")
		}
		if *token != "" {
			return usageErrorf("--token goes with --url")
		}
		rep, err = salesReportFromDir(ctx, *dir, *eventPath, *from, *to)
		if err != nil {
			return err
		}
		if raw, err = json.Marshal(rep); err != nil {
			return err
		}
	default:
		return usageErrorf("give --url URL (a node's device API) or --dir DATA --event EVENT (offline)")
	}
	if *asJSON {
		_, err := fmt.Fprintf(e.stdout, "%s\n", strings.TrimSpace(string(raw)))
		return err
	}
	return printSalesReport(e.stdout, rep)
}

// salesReportFromDir computes the report from a node's store, opened
// read-only.
func salesReportFromDir(ctx context.Context, dir, eventPath, from, to string) (salesreport.Report, error) {
	ev, err := auth.LoadEvent(eventPath)
	if err != nil {
		return salesreport.Report{}, err
	}
	path := dir
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		path = filepath.Join(dir, edge.StoreFile)
	}
	if _, err := os.Stat(path); err != nil {
		return salesreport.Report{}, fmt.Errorf("no store at %s: %w", path, err)
	}
	st, err := sqlite.Open(ctx, path, sqlite.WithReadOnly())
	if err != nil {
		return salesreport.Report{}, err
	}
	defer st.Close()
	rep, err := salesreport.Compute(ctx, st, ev, from, to)
	var re *salesreport.RangeError
	if errors.As(err, &re) {
		return rep, usageErrorf("--%s %s", re.Parameter, re.Detail)
	}
	return rep, err
}

// fetchSalesReport GETs the report; a problem response becomes an error
// carrying its status and detail.
func fetchSalesReport(ctx context.Context, base, token, from, to string) ([]byte, error) {
	u, err := url.Parse(strings.TrimRight(base, "/") + salesreport.Path)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageErrorf("--url must be an http:// or https:// URL of a node, got %q", base)
	}
	q := url.Values{}
	if from != "" {
		q.Set("from", from)
	}
	if to != "" {
		q.Set("to", to)
	}
	u.RawQuery = q.Encode()
	return getAuthorized(ctx, u, token, 30*time.Second, 64<<20)
}

// getAuthorized GETs u as JSON with the bearer token, within timeout, and
// returns at most limit bytes of a 200 answer; any other status becomes an
// error carrying it and, for a problem response, its detail and type.
func getAuthorized(ctx context.Context, u *url.URL, token string, timeout time.Duration, limit int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u.Redacted(), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u.Redacted(), err)
	}
	if resp.StatusCode != http.StatusOK {
		var p struct {
			Type   string `json:"type"`
			Detail string `json:"detail"`
		}
		if json.Unmarshal(b, &p) == nil && p.Type != "" {
			return nil, fmt.Errorf("GET %s: %s: %s (%s)", u.Redacted(), resp.Status, p.Detail, p.Type)
		}
		return nil, fmt.Errorf("GET %s: %s: %s", u.Redacted(), resp.Status, strings.TrimSpace(string(b)))
	}
	return b, nil
}

// printSalesReport writes the Z-report as tables: sales and tender, by
// vendor and by device, each with the event's total.
func printSalesReport(w io.Writer, r salesreport.Report) error {
	money := moneyFormatter(r.Currency)
	methods := append([]string(nil), salesreport.Methods...)
	for m := range r.Totals.Payments {
		if !containsString(methods, m) {
			methods = append(methods, m)
		}
	}
	const stamp = "2006-01-02 15:04:05 -07:00"
	fmt.Fprintf(w, "Z-REPORT  sales in %s, %s to %s (%s)\n", r.Currency, r.From.Format(stamp), r.To.Format(stamp), r.TimeZone)
	type row struct {
		name string
		f    salesreport.Figures
	}
	section := func(what string, rows []row) error {
		rows = append(rows, row{"TOTAL", r.Totals})
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(w, "\nSales by %s\n", what)
		fmt.Fprintf(tw, "%s\tORDERS\tSOLD\tOPEN\tCANCELLED\tMANUAL\tGROSS\tDISCOUNTS\tTAX\tTIPS\tREFUNDS\tNET\t\n", strings.ToUpper(what))
		for _, x := range rows {
			f := x.f
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", x.name, f.Orders, f.Sold, f.Open, f.Cancelled, f.ManualPriceLines,
				money(f.Gross), money(f.Discounts), money(f.Tax), money(f.Tips), money(f.Refunds), money(f.Net))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(w, "\nTender by %s\n", what)
		head := []string{strings.ToUpper(what)}
		for _, m := range methods {
			head = append(head, strings.ToUpper(m))
		}
		head = append(head, "REFUNDED", "TENDERED", "CHANGE", "CASH EXPECTED", "OPEN OWED")
		fmt.Fprintf(tw, "%s\t\n", strings.Join(head, "\t"))
		for _, x := range rows {
			f := x.f
			cells := []string{x.name}
			for _, m := range methods {
				cells = append(cells, money(f.Payments[m]))
			}
			cells = append(cells, money(f.Refunds), money(f.CashTendered), money(f.ChangeGiven), money(f.CashExpected), money(f.OpenOwed))
			fmt.Fprintf(tw, "%s\t\n", strings.Join(cells, "\t"))
		}
		return tw.Flush()
	}
	vendors := make([]row, len(r.Vendors))
	for i, v := range r.Vendors {
		vendors[i] = row{orUnknown(v.Vendor), v.Figures}
	}
	devices := make([]row, len(r.Devices))
	for i, d := range r.Devices {
		devices[i] = row{orUnknown(d.Device), d.Figures}
	}
	if err := section("vendor", vendors); err != nil {
		return err
	}
	if err := section("device", devices); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if len(r.ManualPriceOrders) > 0 {
		fmt.Fprintf(w, "Manually priced orders (check them): %s\n", strings.Join(r.ManualPriceOrders, ", "))
	}
	if len(r.OtherCurrency) > 0 {
		fmt.Fprintf(w, "Orders in another currency, not counted: %s\n", strings.Join(r.OtherCurrency, ", "))
	}
	_, err := fmt.Fprintf(w, "Net = gross - discounts + tips - refunds. Cash expected = cash taken - cash refunded.\n")
	return err
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// moneyFormatter formats minor units with the currency's ISO 4217 number
// of decimals (2 unless listed here).
func moneyFormatter(currency string) func(int64) string {
	decimals := 2
	switch currency {
	case "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF":
		decimals = 0
	case "BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND":
		decimals = 3
	}
	return func(v int64) string {
		if decimals == 0 {
			return fmt.Sprintf("%d", v)
		}
		sign := ""
		u := uint64(v)
		if v < 0 {
			sign, u = "-", uint64(-v)
		}
		scale := uint64(1)
		for range decimals {
			scale *= 10
		}
		return fmt.Sprintf("%s%d.%0*d", sign, u/scale, decimals, u%scale)
	}
}
