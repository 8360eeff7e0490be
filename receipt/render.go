package receipt

import (
	"bytes"
	"fmt"
	"html/template"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"canopy/pos"
)

// Presentation is what a rendering shows besides the signed receipt: names
// that are not part of the signed body, and the event's time zone.
type Presentation struct {
	EventName  string
	VendorName string         // empty: the vendor id
	Location   *time.Location // nil: UTC
}

// Columns is the width of the text rendering: 42 characters, what an 80 mm
// thermal printer prints in its standard font.
const Columns = 42

// minorDigits lists ISO 4217 currencies whose minor unit is not 1/100.
var minorDigits = map[string]int{
	"BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
	"PYG": 0, "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
	"BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
	"CLF": 4, "UYW": 4,
}

// Money formats an amount in minor units of currency as a decimal, e.g.
// 1250 EUR → "12.50", 1250 JPY → "1250".
func Money(amount int64, currency string) string {
	digits, ok := minorDigits[strings.ToUpper(currency)]
	if !ok {
		digits = 2
	}
	neg := amount < 0
	u := uint64(amount)
	if neg {
		u = -u
	}
	s := strconv.FormatUint(u, 10)
	if digits > 0 {
		for len(s) <= digits {
			s = "0" + s
		}
		s = s[:len(s)-digits] + "." + s[len(s)-digits:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// clean makes outside text printable on one line: control characters and
// line breaks become spaces, invalid UTF-8 becomes U+FFFD.
func clean(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
}

func width(s string) int { return utf8.RuneCountInString(s) }

// cut shortens s to at most n characters, marking a cut with "…".
func cut(s string, n int) string {
	if width(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// wrap splits s into lines of at most n characters, at spaces where it can.
func wrap(s string, n int) []string {
	var lines []string
	for width(s) > n {
		r := []rune(s)
		at := strings.LastIndex(string(r[:n+1]), " ")
		if at <= 0 {
			lines = append(lines, string(r[:n]))
			s = string(r[n:])
			continue
		}
		lines = append(lines, strings.TrimRight(s[:at], " "))
		s = strings.TrimLeft(s[at:], " ")
	}
	return append(lines, s)
}

type textWriter struct{ b bytes.Buffer }

func (w *textWriter) line(s string) { w.b.WriteString(s + "\n") }

func (w *textWriter) rule() { w.line(strings.Repeat("-", Columns)) }

func (w *textWriter) center(s string) {
	for _, l := range wrap(clean(s), Columns) {
		w.line(strings.Repeat(" ", (Columns-width(l))/2) + l)
	}
}

// pair writes left and right on one line, right-aligned; left is cut to fit.
func (w *textWriter) pair(left, right string) {
	left = cut(clean(left), max(1, Columns-width(right)-1))
	w.line(left + strings.Repeat(" ", max(1, Columns-width(left)-width(right))) + right)
}

func (w *textWriter) wrapped(prefix, s string) {
	for _, l := range wrap(clean(s), Columns-width(prefix)) {
		w.line(prefix + l)
	}
}

func methodName(m string) string {
	switch m {
	case pos.MethodCash:
		return "Cash"
	case pos.MethodCard:
		return "Card"
	case pos.MethodWallet:
		return "Wallet"
	case pos.MethodOther:
		return "Other"
	}
	return m
}

func (p Presentation) vendor(rb *pos.ReceiptBody) string {
	if p.VendorName != "" {
		return p.VendorName
	}
	return rb.Vendor
}

func (p Presentation) when(r *Receipt) string {
	loc := p.Location
	if loc == nil {
		loc = time.UTC
	}
	return r.Entry.HLC.Time().In(loc).Format("2006-01-02 15:04 MST")
}

// short returns the first n characters of a hex string and "…".
func short(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Text renders the receipt for an 80 mm thermal printer: Columns characters
// wide, monospace, plain UTF-8 text.
func Text(r *Receipt, p Presentation) []byte {
	rb := r.Payment.Receipt
	cur := rb.Currency
	m := func(v int64) string { return Money(v, cur) }
	var w textWriter
	if p.EventName != "" {
		w.center(p.EventName)
	}
	w.center(p.vendor(rb))
	w.center(p.when(r))
	w.rule()
	for _, l := range rb.Lines {
		w.wrapped("", l.Name)
		detail := fmt.Sprintf("  %d x %s", l.Qty, m(l.UnitPrice))
		if l.ManualPrice {
			detail += " (manual)"
		}
		w.pair(detail, m(l.Amount))
	}
	w.rule()
	t := rb.Totals
	w.pair("Subtotal", m(t.Items))
	if t.Discount > 0 {
		label := "Discount"
		if rb.Discount != nil && rb.Discount.Reason != "" {
			label += " (" + rb.Discount.Reason + ")"
		}
		w.pair(label, m(-t.Discount))
	}
	if t.Tip > 0 {
		w.pair("Tip", m(t.Tip))
	}
	w.pair("TOTAL "+cur, m(t.Total))
	w.pair("  incl. tax", m(t.Tax))
	w.rule()
	var change int64
	for _, pd := range rb.Payments {
		w.pair(methodName(pd.Method), m(pd.Tendered))
		if pd.Reference != "" {
			w.wrapped("  ref ", pd.Reference)
		}
		change += pd.Change
	}
	if change > 0 {
		w.pair("Change", m(change))
	}
	w.rule()
	w.wrapped("Order ", r.Document.Order)
	e := r.Entry
	w.line(fmt.Sprintf("Node %s seq %d", short(e.Node.String(), 12), e.Seq))
	w.line("Entry " + short(r.Document.Entry.Hash.String(), 24))
	if r.Document.PendingCheckpoint {
		w.line("Checkpoint: pending")
	} else {
		w.line(fmt.Sprintf("Checkpoint size %d", r.Document.Proof.Size))
	}
	w.line("Signed receipt. Verify offline:")
	w.line("  canopy verify receipt FILE \\")
	w.line("    --event event.json")
	return w.b.Bytes()
}

var page = template.Must(template.New("receipt").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Receipt {{.Order}}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:26rem;margin:1rem auto;padding:0 1rem;color:#111}
h1{font-size:1.2rem;margin:0}h2{font-size:1rem;font-weight:normal;margin:.2rem 0 1rem}
table{width:100%;border-collapse:collapse}td{padding:.15rem 0;vertical-align:top}
td.n{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
tr.total td{font-weight:bold;border-top:1px solid #111}
.q{color:#555;font-size:.9rem}
footer{margin-top:1.2rem;font-size:.8rem;color:#555;word-break:break-all}
code{font-family:ui-monospace,monospace}
</style>
</head>
<body>
<header>{{if .Event}}<h1>{{.Event}}</h1>{{end}}<h2>{{.Vendor}} · {{.When}}</h2></header>
<table>
{{range .Lines}}<tr><td>{{.Name}}<div class="q">{{.Qty}} × {{.Price}}{{if .Manual}} (manual price){{end}}</div></td><td class="n">{{.Amount}}</td></tr>
{{end}}<tr><td>Subtotal</td><td class="n">{{.Items}}</td></tr>
{{if .Discount}}<tr><td>Discount{{if .DiscountReason}} ({{.DiscountReason}}){{end}}</td><td class="n">{{.Discount}}</td></tr>
{{end}}{{if .Tip}}<tr><td>Tip</td><td class="n">{{.Tip}}</td></tr>
{{end}}<tr class="total"><td>Total {{.Currency}}</td><td class="n">{{.Total}}</td></tr>
<tr><td class="q">incl. tax</td><td class="n q">{{.Tax}}</td></tr>
{{range .Payments}}<tr><td>{{.Method}}{{if .Reference}} <span class="q">ref {{.Reference}}</span>{{end}}</td><td class="n">{{.Tendered}}</td></tr>
{{end}}{{if .Change}}<tr><td>Change</td><td class="n">{{.Change}}</td></tr>
{{end}}</table>
<footer>
<p>Order <code>{{.Order}}</code></p>
<p>Signed by node <code>{{.Node}}</code>, entry {{.Seq}}, hash <code>{{.Hash}}</code>.
{{if .Pending}}Not yet covered by a signed checkpoint.{{else}}Included in the node's signed checkpoint of size {{.CheckpointSize}}.{{end}}</p>
<p>Verify it offline with the receipt document and the event's <code>event.json</code>: <code>canopy verify receipt FILE --event event.json</code></p>
</footer>
</body>
</html>
`))

type htmlLine struct {
	Name, Price, Amount string
	Qty                 int64
	Manual              bool
}

type htmlPayment struct{ Method, Reference, Tendered string }

type htmlData struct {
	Event, Vendor, When, Currency, Order, Node, Hash string
	Lines                                            []htmlLine
	Items, Discount, DiscountReason, Tip, Total, Tax string
	Payments                                         []htmlPayment
	Change                                           string
	Seq                                              uint64
	Pending                                          bool
	CheckpointSize                                   int64
}

// HTML renders the receipt as a small self-contained page: no scripts, no
// external assets; every outside string is escaped by html/template.
func HTML(r *Receipt, p Presentation) ([]byte, error) {
	rb := r.Payment.Receipt
	cur := rb.Currency
	m := func(v int64) string { return Money(v, cur) }
	d := htmlData{
		Event: p.EventName, Vendor: p.vendor(rb), When: p.when(r), Currency: cur,
		Order: r.Document.Order, Node: r.Entry.Node.String(), Hash: r.Document.Entry.Hash.String(),
		Items: m(rb.Totals.Items), Total: m(rb.Totals.Total), Tax: m(rb.Totals.Tax),
		Seq: r.Entry.Seq, Pending: r.Document.PendingCheckpoint,
	}
	for _, l := range rb.Lines {
		d.Lines = append(d.Lines, htmlLine{Name: l.Name, Qty: l.Qty, Price: m(l.UnitPrice), Amount: m(l.Amount), Manual: l.ManualPrice})
	}
	if rb.Totals.Discount > 0 {
		d.Discount = m(-rb.Totals.Discount)
		if rb.Discount != nil {
			d.DiscountReason = rb.Discount.Reason
		}
	}
	if rb.Totals.Tip > 0 {
		d.Tip = m(rb.Totals.Tip)
	}
	var change int64
	for _, pd := range rb.Payments {
		d.Payments = append(d.Payments, htmlPayment{Method: methodName(pd.Method), Reference: pd.Reference, Tendered: m(pd.Tendered)})
		change += pd.Change
	}
	if change > 0 {
		d.Change = m(change)
	}
	if r.Document.Proof != nil {
		d.CheckpointSize = r.Document.Proof.Size
	}
	var buf bytes.Buffer
	if err := page.Execute(&buf, d); err != nil {
		return nil, fmt.Errorf("render receipt page: %w", err)
	}
	return buf.Bytes(), nil
}
