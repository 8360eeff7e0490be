package imagecache

import (
	"runtime"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestPinListRemove(t *testing.T) {
	reg := newTestRegistry(t)
	a := reg.addImage(t, "team/a", "v1", 2, 1000, 50)
	b := reg.addImage(t, "team/b", "v1", 1, 500, 51)
	dir := t.TempDir()
	c, url := testCache(t, dir, []string{reg.srv.URL}, nil)

	res, err := c.Pin(t.Context(), "team/a", "v1-index", PinOptions{Platforms: []string{"windows/amd64"}})
	if err != nil || res.Manifests != 1 || res.Blobs != 0 {
		t.Fatalf("pin of another platform: %+v %v", res, err)
	}
	var progress int
	res, err = c.Pin(t.Context(), "team/a", "v1-index", PinOptions{
		Platforms: []string{"linux/" + runtime.GOARCH},
		Progress:  func(d ocispec.Descriptor) { progress++ },
	})
	if err != nil || res.Digest != a.index || res.Manifests != 2 || res.Blobs != 3 || res.Bytes != int64(2000+len(reg.blob(a.config))) || progress != 3 {
		t.Fatalf("pin: %+v %v (progress %d)", res, err, progress)
	}
	if _, err := c.Pin(t.Context(), "team/a", "v1", PinOptions{Platforms: []string{"linux"}}); err == nil {
		t.Fatal("bad platform accepted")
	}
	if err := pullImage(t, url, reg, b, nil); err != nil {
		t.Fatal(err)
	}
	imgs, err := c.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 2 || imgs[0].Repo != "team/a" || imgs[0].Tag != "v1-index" || !imgs[0].Pinned || !imgs[0].Complete ||
		imgs[1].Repo != "team/b" || imgs[1].Pinned || !imgs[1].Complete || imgs[1].Digest != b.manifest {
		t.Fatalf("list: %+v", imgs)
	}

	// Remove frees what only that image used (not the config blob, which
	// team/b shares); a later pull fetches again.
	if a.config != b.config {
		t.Fatal("the images should share their config blob")
	}
	freed, err := c.Remove("team/a", "v1-index")
	if err != nil || freed != int64(2000+len(a.body)+len(a.indexBody)) {
		t.Fatalf("remove: %d %v (config %d, manifest %d, index %d)", freed, err, len(reg.blob(a.config)), len(a.body), len(a.indexBody))
	}
	if imgs, _ := c.List(); len(imgs) != 1 || imgs[0].Repo != "team/b" {
		t.Fatalf("after remove: %+v", imgs)
	}
	if c.store.has(a.layers[0]) || c.store.pinned(a.layers[0]) {
		t.Fatal("removed image's layer still stored or pinned")
	}
	r := do(t, "GET", url+"/v2/team/a/blobs/"+a.layers[0].String(), nil)
	if r.status != 200 || reg.count("GET", "/v2/team/a/blobs/"+a.layers[0].String()) != 2 {
		t.Fatalf("pull after remove: %d", r.status)
	}
	if _, err := c.Remove("team/a", "nope"); err == nil {
		t.Fatal("removing an uncached tag succeeded")
	}
	if _, err := c.Remove("team/b", b.manifest.String()); err != nil {
		t.Fatal(err)
	}
	if imgs, _ := c.List(); len(imgs) != 0 {
		t.Fatalf("after removing by digest: %+v", imgs)
	}
}
