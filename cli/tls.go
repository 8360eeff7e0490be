package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"canopy/edgecache/localtls"
)

func init() {
	register(command{
		name:    "tls init",
		summary: "create the event CA that issues the edge cache's site certificates, and export its root for staff devices",
		run:     runTLSInit,
	})
}

func runTLSInit(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "tls init", "--dir DIR [--name NAME] [--valid DURATION]")
	dir := fs.String("dir", "", "directory for the CA (created 0700; required)")
	name := fs.String("name", "Canopy event CA", "the CA's name, as staff devices show it")
	valid := fs.Duration("valid", 30*24*time.Hour, "how long the root certificate is valid")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *dir == "" {
		return usageErrorf("--dir is required")
	}
	if *valid <= 0 {
		return usageErrorf("--valid %v: want a positive duration", *valid)
	}
	ca, err := localtls.InitCA(*dir, *name, time.Now(), *valid)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "event CA %q created, valid until %s\n", ca.Cert.Subject.CommonName, ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintf(e.stdout, "  private key (keep on the edge, mode 0600): %s\n", filepath.Join(*dir, localtls.CAKeyFile))
	fmt.Fprintf(e.stdout, "  root certificate for staff devices (PEM): %s\n", filepath.Join(*dir, localtls.CACertFile))
	fmt.Fprintf(e.stdout, "  root certificate for phones (DER):        %s\n", filepath.Join(*dir, localtls.CADERFile))
	fmt.Fprintf(e.stdout, "serve HTTPS on the edge cache with [tls] ca_dir = %q\n", *dir)
	return nil
}
