package bench

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestBenchUpstreamAndPull(t *testing.T) {
	img := newBenchImage(3, 1000)
	up, err := startBenchUpstream(img)
	if err != nil {
		t.Fatal(err)
	}
	defer up.srv.Close()
	got, err := pull(context.Background(), http.DefaultClient, up.url)
	if err != nil || got != img.size {
		t.Fatalf("pull: %d bytes, %v; want %d", got, err, img.size)
	}
	if up.blobGets.Load() != 4 || up.bytes.Load() != img.size {
		t.Fatalf("upstream counted %d blob GETs, %d bytes; want 4, %d", up.blobGets.Load(), up.bytes.Load(), img.size)
	}
	up.setHang(true)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := pull(ctx, http.DefaultClient, up.url); err == nil || ctx.Err() == nil {
		t.Fatalf("pull from a hung upstream: %v", err)
	}
	up.setHang(false)
	if _, err := pull(context.Background(), http.DefaultClient, up.url); err != nil {
		t.Fatalf("pull after the hang: %v", err)
	}
	if !strings.Contains(DockerRegistryProxyConfig, "remoteurl: UPSTREAM") {
		t.Fatal("docker-registry config is not in proxy mode")
	}
	m := imgMedian([]ImagesResult{{Case: "cold", System: "x", Stat: "run", Seconds: 3}, {Case: "cold", System: "x", Stat: "run", Seconds: 1}, {Case: "cold", System: "x", Stat: "run", Seconds: 2}}, "cold", "x")
	if m.Seconds != 2 || m.Stat != "median" {
		t.Fatalf("median %+v", m)
	}
}
