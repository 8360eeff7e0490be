package cli

import (
	"context"
	"fmt"
	"os/exec"
	"time"

	"canopy/bench"
)

func init() {
	register(command{
		name:    "bench images",
		summary: "compare the image cache with docker-registry in proxy mode: cold, warm, concurrent cold and hung-uplink pulls (JSON lines)",
		run:     runBenchImages,
	})
}

func runBenchImages(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "bench images", "[flags]")
	dir := fs.String("dir", ".", "directory for the caches' stores (temporary directories are made inside and removed)")
	layers := fs.Int("layers", 5, "layers in the test image")
	layerMB := fs.Int("layer-mb", 20, "MB (10^6 bytes) per layer")
	conc := fs.Int("concurrency", 20, "simultaneous cold pulls")
	rounds := fs.Int("rounds", 3, "rounds, alternating which system goes first")
	registry := fs.String("registry", "docker-registry", "docker-registry binary; empty: Canopy only")
	hang := fs.Duration("hang-timeout", 10*time.Second, "bound of a pull while the uplink is hung")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if err := checkCounts(intFlag{"layers", *layers, 100}, intFlag{"layer-mb", *layerMB, 1000}, intFlag{"concurrency", *conc, 1000}, intFlag{"rounds", *rounds, 100}); err != nil {
		return err
	}
	if *hang <= 0 {
		return usageErrorf("--hang-timeout must be positive")
	}
	reg := *registry
	if reg != "" {
		path, err := exec.LookPath(reg)
		if err != nil {
			return fmt.Errorf("bench images: %s not found (Debian: apt-get install docker-registry; or --registry '' for Canopy alone): %w", reg, err)
		}
		reg = path
	}
	o := bench.ImagesOptions{Dir: *dir, Layers: *layers, LayerBytes: *layerMB * 1_000_000, Concurrency: *conc, Rounds: *rounds, Registry: reg, HangTimeout: *hang}
	if err := bench.RunImages(ctx, e.stdout, o); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}
