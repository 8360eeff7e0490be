package cli_test

import (
	"strings"
	"testing"
)

func TestImagesServeBadInput(t *testing.T) {
	dir := t.TempDir()
	if r := runCLI("images", "serve", "--dir", dir, "--tag-deadline", "-1s"); r.code != 2 || !strings.Contains(r.stderr, "must not be negative") {
		t.Fatalf("negative deadline: %d %s", r.code, r.stderr)
	}
	if r := runCLI("images", "serve", "--dir", dir, "--listen", "127.0.0.1:notaport", "--upstream", "http://127.0.0.1:1"); r.code != 1 || !strings.Contains(r.stderr, "listen on 127.0.0.1:notaport") {
		t.Fatalf("bad listen address: %d %s", r.code, r.stderr)
	}
	if r := runCLI("images", "serve", "--dir", dir, "--upstream", "ftp://x"); r.code != 1 || r.stderr == "" {
		t.Fatalf("bad upstream URL: %d %s", r.code, r.stderr)
	}
}
