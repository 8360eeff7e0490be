package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"canopy/auth"
	"canopy/receipt"
)

func init() {
	register(command{
		name:    "verify receipt",
		summary: "verify a signed receipt document offline: entry, signature, enrolment, inclusion proof",
		run:     runVerifyReceipt,
	})
}

func runVerifyReceipt(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "verify receipt", "FILE --event EVENT\n\nFILE is a receipt document (application/vnd.canopy.receipt+json, as served by\nGET /v1/receipts/{id}). Exit status: 0 verified, 1 not verified, 2 bad usage.")
	eventPath := fs.String("event", "", "the event's event.json or its directory (required)")
	requireProof := fs.Bool("require-proof", false, "fail if the receipt carries no inclusion proof yet (pending checkpoint)")
	var witnessKeys []string
	fs.Func("witness-key", "a hub witness's verifier key (ledger/FORMAT.md); the checkpoint must carry its valid cosignature (repeatable)", func(v string) error {
		witnessKeys = append(witnessKeys, v)
		return nil
	})
	if err := parseFlags(fs, flagsFirst(args, map[string]bool{"event": true, "witness-key": true}), 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErrorf("want one receipt FILE to verify")
	}
	if *eventPath == "" {
		return usageErrorf("--event is required (the event's event.json)")
	}
	ev, err := auth.LoadEvent(*eventPath)
	if err != nil {
		return err
	}
	doc, err := readLimited(fs.Arg(0), receipt.MaxDocumentSize)
	if err != nil {
		return err
	}
	r, err := receipt.Verify(doc, ev, receipt.Options{RequireProof: *requireProof, WitnessKeys: witnessKeys})
	if err != nil {
		return fmt.Errorf("%s does not verify: %w", fs.Arg(0), err)
	}
	rb := r.Payment.Receipt
	w := e.stdout
	fmt.Fprintf(w, "OK   receipt: order %s, total %s %s, vendor %s, %d line(s), paid %s\n",
		rb.Order, receipt.Money(rb.Totals.Total, rb.Currency), rb.Currency, rb.Vendor, len(rb.Lines),
		r.Entry.HLC.Time().In(ev.Location()).Format("2006-01-02 15:04:05 MST"))
	fmt.Fprintf(w, "OK   entry: node %s seq %d, hash %s; signature verifies with the node key\n",
		r.Entry.Node, r.Entry.Seq, r.Document.Entry.Hash)
	fmt.Fprintf(w, "OK   enrolment: node %s enrolled by the key of event %q\n", r.Entry.Node, ev.Slug)
	if r.Checkpoint == nil {
		fmt.Fprintf(w, "NOTE inclusion proof: none yet (pending checkpoint); fetch the receipt again later for one\n")
		return nil
	}
	fmt.Fprintf(w, "OK   inclusion proof: leaf %d of the node's signed checkpoint of size %d\n",
		r.Document.Proof.Index, r.Checkpoint.Size)
	if len(r.Cosignatures) == 0 {
		fmt.Fprintf(w, "NOTE witness: the checkpoint carries no witness cosignature yet\n")
	}
	for _, c := range r.Cosignatures {
		status := "NOTE witness: cosigned by %s (key hash %08x) at %s; not checked (give --witness-key)\n"
		if c.Verified {
			status = "OK   witness: cosigned by %s (key hash %08x) at %s; the cosignature verifies\n"
		}
		fmt.Fprintf(w, status, c.Name, c.KeyHash, c.Time.Format(time.RFC3339))
	}
	return nil
}

// readLimited reads a file of at most limit bytes.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes: not a receipt document", path, limit)
	}
	return b, nil
}

// flagsFirst moves flags before positional arguments, so flags may follow
// FILE. valued names the flags that take a separate value ("--event E").
func flagsFirst(args []string, valued map[string]bool) []string {
	var flags, rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			rest = append(rest, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if !strings.Contains(name, "=") && valued[name] && i+1 < len(args) {
			flags = append(flags, args[i+1])
			i++
		}
	}
	if len(rest) > 0 {
		flags = append(flags, "--")
	}
	return append(flags, rest...)
}
