package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestImagesTable(t *testing.T) {
	c := Default()
	text := `
[node]
dir = "/data"
[images]
listen = "127.0.0.1:5000"
max_bytes = 1000000
tag_deadline = "300ms"
[[images.upstream]]
prefix = "docker.io"
mirrors = ["https://mirror.example", "https://registry-1.docker.io"]
[[images.upstream]]
mirrors = ["http://127.0.0.1:5001"]
username = "u"
password = "p"
`
	if err := c.Parse("t", []byte(text)); err != nil {
		t.Fatal(err)
	}
	if err := c.Resolve(); err != nil {
		t.Fatal(err)
	}
	im := c.Images
	if im.Dir != "/data/images" || im.MaxBytes != 1000000 || im.TagDeadline.Duration != 300*time.Millisecond ||
		im.UpstreamTimeout.Duration != 10*time.Second || len(im.Upstream) != 2 || im.Upstream[0].Mirrors[1] != "https://registry-1.docker.io" ||
		im.Upstream[1].Username != "u" {
		t.Fatalf("images: %+v", im)
	}

	// The table is optional: no listen, no checks, no cache.
	c = Default()
	if err := c.Resolve(); err != nil || c.Images.Listen != "" {
		t.Fatalf("default: %v %+v", err, c.Images)
	}
}

func TestImagesErrors(t *testing.T) {
	base := "[images]\nlisten = \"127.0.0.1:5000\"\n"
	up := "[[images.upstream]]\nmirrors = [\"https://r.example\"]\n"
	cases := []struct{ text, want string }{
		{base + "[[images.upstream]]\nmirrors = [\"https://r\"]\nbogus = 1\n", "unknown key(s): images.upstream.bogus"},
		{"[images]\nlisten = \"nope\"\n" + up, "images.listen"},
		{base, "no [[images.upstream]]"},
		{base + "[[images.upstream]]\nprefix = \"x\"\n", "no mirrors"},
		{base + "[[images.upstream]]\nmirrors = [\"ftp://x\"]\n", "want http:// or https://"},
		{base + up + up, "used twice"},
		{base + "max_bytes = -1\n" + up, "images.max_bytes"},
		{base + "tag_deadline = \"-1s\"\n" + up, "images.tag_deadline"},
		{base + "tag_deadline = \"soon\"\n" + up, "invalid duration"},
		{base + "[[images.upstream]]\nmirrors = [\"https://r\"]\ntoken = \"t\"\nusername = \"u\"\n", "not both"},
	}
	for _, tc := range cases {
		c := Default()
		err := c.Parse("t", []byte(tc.text))
		if err == nil {
			err = c.Resolve()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want error containing %q", tc.text, err, tc.want)
		}
	}
}

func TestImagesPolicyAndAuth(t *testing.T) {
	key := filepath.Join(t.TempDir(), "cosign.pub")
	if err := os.WriteFile(key, []byte("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := "[images]\nlisten = \"127.0.0.1:5000\"\nauth = true\n[[images.upstream]]\nmirrors = [\"https://r.example\"]\n"
	c := Default()
	if err := c.Parse("t", []byte(base+"[[images.policy]]\nprefix = \"docker.io/myorg\"\npublic_key = \""+key+"\"\n")); err != nil {
		t.Fatal(err)
	}
	if err := c.Resolve(); err != nil {
		t.Fatal(err)
	}
	if !c.Images.Auth || len(c.Images.Policy) != 1 || c.Images.Policy[0].Prefix != "docker.io/myorg" || c.Images.Policy[0].PublicKey != key {
		t.Fatalf("images: %+v", c.Images)
	}
	pol := func(prefix, k string) string {
		return "[[images.policy]]\nprefix = \"" + prefix + "\"\npublic_key = \"" + k + "\"\n"
	}
	cases := []struct{ text, want string }{
		{base + pol("", key), "images.policy[0]: prefix"},
		{base + pol("myorg/", key), "images.policy[0]: prefix"},
		{base + pol("a", key) + pol("a", key), "used twice"},
		{base + pol("a", ""), "no public_key"},
		{base + pol("a", filepath.Join(t.TempDir(), "missing.pub")), "public_key"},
		{base + "[[images.policy]]\nprefix = \"a\"\nkey = \"x\"\n", "unknown key(s): images.policy.key"},
		{"[images]\nlisten = \"127.0.0.1:5000\"\nauth = \"yes\"\n[[images.upstream]]\nmirrors = [\"https://r\"]\n", "auth"},
	}
	for _, tc := range cases {
		c := Default()
		err := c.Parse("t", []byte(tc.text))
		if err == nil {
			err = c.Resolve()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want error containing %q", tc.text, err, tc.want)
		}
	}
}
