package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"canopy/edgecache/localtls"
)

func TestTLSInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	var out, errOut bytes.Buffer
	if code := Run(context.Background(), []string{"tls", "init", "--dir", dir, "--name", "Night Market CA"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), localtls.CADERFile) {
		t.Errorf("output names no DER root: %s", out.String())
	}
	ca, err := localtls.LoadCA(dir)
	if err != nil || ca.Cert.Subject.CommonName != "Night Market CA" {
		t.Fatalf("LoadCA: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, localtls.CAKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key: %v", err)
	}
	errOut.Reset()
	if code := Run(context.Background(), []string{"tls", "init", "--dir", dir}, &out, &errOut); code == 0 || !strings.Contains(errOut.String(), "already holds a CA") {
		t.Errorf("second init: exit %d, %q", code, errOut.String())
	}
	if code := Run(context.Background(), []string{"tls", "init"}, &out, &errOut); code != 2 {
		t.Errorf("no --dir: exit %d, want 2", code)
	}
}
