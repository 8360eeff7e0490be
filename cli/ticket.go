package cli

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"canopy/auth"
)

func init() {
	register(command{
		name:    "ticket issue",
		summary: "sign a batch of tickets and write them as CSV (one QR-sized token each)",
		run:     runTicketIssue,
	})
}

// maxTicketBatch bounds one run of ticket issue.
const maxTicketBatch = 100000

// ticketHeader is the CSV header of ticket issue.
var ticketHeader = []string{"id", "type", "doors", "reentry", "valid_from", "valid_until", "token"}

func runTicketIssue(ctx context.Context, e *env, args []string) error {
	fl := newFlagSet(e, "ticket issue", "--event DIR --count N [--type T] [--doors A,B] [--reentry] [--valid-from RFC3339] [--valid-until RFC3339] [--out FILE.csv]")
	evPath := fl.String("event", "", "event directory holding event.json and event.key (required)")
	count := fl.String("count", "", fmt.Sprintf("number of tickets, 1..%d (required)", maxTicketBatch))
	typ := fl.String("type", "general", "ticket type")
	doors := fl.String("doors", "", "comma-separated doors the tickets may enter by (default: every door)")
	reentry := fl.Bool("reentry", false, "allow re-entry after scanning out")
	from := fl.String("valid-from", "", "start of validity, RFC 3339 with offset (default: the event's start)")
	until := fl.String("valid-until", "", "end of validity, RFC 3339 with offset (default: the event's end)")
	out := fl.String("out", "", "CSV file to create, mode 0600 (default: standard output)")
	if err := parseFlags(fl, args, 0); err != nil {
		return err
	}
	if *evPath == "" {
		return usageErrorf("--event is required")
	}
	if *count == "" {
		return usageErrorf("--count is required")
	}
	n, err := strconv.Atoi(*count)
	if err != nil || n < 1 || n > maxTicketBatch {
		return usageErrorf("--count: %q is not a number in 1..%d", *count, maxTicketBatch)
	}
	var doorList []string
	if *doors != "" {
		for _, d := range strings.Split(*doors, ",") {
			if d = strings.TrimSpace(d); d == "" {
				return usageErrorf("--doors: %q has an empty door name", *doors)
			}
			doorList = append(doorList, strings.TrimSpace(d))
		}
	}
	ev, key, err := loadCeremony(*evPath)
	if err != nil {
		return err
	}
	validFrom, validUntil := ev.StartsAt, ev.EndsAt
	if *from != "" {
		if validFrom, err = parseTimeFlag("valid-from", *from); err != nil {
			return err
		}
	}
	if *until != "" {
		if validUntil, err = parseTimeFlag("valid-until", *until); err != nil {
			return err
		}
	}

	loc := ev.Location()
	rows := make([][]string, 0, n)
	for range n {
		if err := ctx.Err(); err != nil {
			return err
		}
		t := auth.Ticket{
			ID: auth.NewTicketID(), Event: ev.Slug, Type: *typ, Doors: doorList, Reentry: *reentry,
			ValidFrom: validFrom, ValidUntil: validUntil,
		}
		tok, err := auth.IssueTicket(key, t)
		if err != nil {
			return authError(err)
		}
		rows = append(rows, []string{t.ID, t.Type, strings.Join(t.Doors, ","), strconv.FormatBool(t.Reentry),
			validFrom.Truncate(time.Second).In(loc).Format(time.RFC3339),
			validUntil.Truncate(time.Second).In(loc).Format(time.RFC3339), tok})
	}

	if *out == "" {
		return writeTicketCSV(e.stdout, rows)
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return usageErrorf("--out: %s already exists; refusing to overwrite tickets", *out)
		}
		return err
	}
	err = writeTicketCSV(f, rows)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(*out)
		return fmt.Errorf("write %s: %w", *out, err)
	}
	fmt.Fprintf(e.stderr, "Wrote %d %s tickets for %s to %s.\n", n, *typ, ev.Slug, *out)
	return nil
}

func writeTicketCSV(w io.Writer, rows [][]string) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(ticketHeader); err != nil {
		return err
	}
	if err := cw.WriteAll(rows); err != nil {
		return err
	}
	return cw.Error()
}
