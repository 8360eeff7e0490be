package cli

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"canopy/edge"
	"canopy/internal/testutil"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestShowCatchUp: a fresh edge replacing a dead one pulls the event from
// a peer and reports its progress until it has caught up.
func TestShowCatchUp(t *testing.T) {
	ev := testutil.NewEvent(t, "rehydrate")
	old, err := edge.Open(context.Background(), ev.EdgeConfig(t, "old", ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < 30; w++ { // 3,000 entries, appended concurrently
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				if _, err := old.Journal.Append(context.Background(), "test.note/v1", fmt.Sprintf("n%d-%d", w, i), []byte(`{"text":"x"}`)); err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	cfg := ev.EdgeConfig(t, "new", "")
	cfg.Sync.Peers = []string{old.URL()}
	fresh, err := edge.Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close(context.Background())
	var out syncBuf
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	showCatchUp(ctx, &out, fresh)
	if !strings.Contains(out.String(), "caught up: ") {
		t.Fatalf("no caught-up line: %q", out.String())
	}
	head, _, err := fresh.Store.Head(context.Background(), ev.Event.Slug, old.Journal.Node())
	if err != nil || head < 3001 {
		t.Fatalf("the new edge holds %d of the old edge's entries (%v)", head, err)
	}
}
