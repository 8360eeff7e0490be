package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"canopy/edge"
)

// showCatchUp reports a rehydrating edge's progress — entries still to pull
// from its peers, entries/s and time left — until it has caught up (a
// progress bar on a terminal, a line every few seconds otherwise). The edge
// serves requests meanwhile.
func showCatchUp(ctx context.Context, w io.Writer, ed *edge.Edge) {
	if len(ed.Peers) == 0 {
		return
	}
	term := isTerminal(w)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	var total, lastLine int
	lastPrint := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		behind := 0
		for _, p := range ed.Peers {
			n, err := p.Behind(ctx)
			if err != nil {
				return
			}
			behind = max(behind, n)
		}
		if behind > total {
			total = behind
		}
		if total == 0 {
			if time.Since(start) > 30*time.Second {
				return // nothing to catch up with
			}
			continue
		}
		done := total - behind
		elapsed := time.Since(start).Seconds()
		rate := float64(done) / max(elapsed, 0.001)
		left := "?"
		if rate > 0 {
			left = (time.Duration(float64(behind)/rate) * time.Second).Round(time.Second).String()
		}
		line := fmt.Sprintf("catching up: %d of %d entries (%.0f/s, %s left)", done, total, rate, left)
		switch {
		case behind == 0:
			if term {
				fmt.Fprintf(w, "\r%-*s\r", lastLine, "")
			}
			fmt.Fprintf(w, "caught up: %d entries in %s\n", total, time.Since(start).Round(time.Millisecond))
			return
		case term:
			bar := progressBar(done, total, 30)
			fmt.Fprintf(w, "\r%s %s", bar, line)
			lastLine = len(bar) + 1 + len(line)
		case time.Since(lastPrint) >= 3*time.Second:
			fmt.Fprintln(w, line)
			lastPrint = time.Now()
		}
	}
}

func progressBar(done, total, width int) string {
	filled := 0
	if total > 0 {
		filled = done * width / total
	}
	b := make([]byte, 0, width+2)
	b = append(b, '[')
	for i := 0; i < width; i++ {
		if i < filled {
			b = append(b, '#')
		} else {
			b = append(b, '.')
		}
	}
	return string(append(b, ']'))
}
