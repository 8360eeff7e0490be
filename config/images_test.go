package config

import (
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
