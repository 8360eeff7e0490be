package edgecache

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Purge selects stored responses to remove. Exactly one of URL, Prefix,
// Tag and All is set. Site limits it to one site (its name, as in
// [[cache.site]]); empty means every site.
type Purge struct {
	Site string `json:"site,omitempty"`
	// URL is a request target ("/path?query") or an absolute URL, whose
	// host then names the site.
	URL string `json:"url,omitempty"`
	// Prefix matches request targets starting with it ("/static/").
	Prefix string `json:"prefix,omitempty"`
	// Tag matches responses whose Surrogate-Key field lists it.
	Tag string `json:"tag,omitempty"`
	All bool   `json:"all,omitempty"`
}

// check validates p and resolves an absolute URL into Site and a target.
func (p *Purge) check() error {
	n := 0
	for _, set := range []bool{p.URL != "", p.Prefix != "", p.Tag != "", p.All} {
		if set {
			n++
		}
	}
	if n != 1 {
		return errors.New("edgecache: purge: give exactly one of url, prefix, tag, all")
	}
	if p.URL != "" {
		u, err := url.Parse(p.URL)
		if err != nil {
			return fmt.Errorf("edgecache: purge: url %q: %v", p.URL, err)
		}
		if u.IsAbs() {
			host := u.Hostname()
			if p.Site != "" && !strings.EqualFold(p.Site, host) {
				return fmt.Errorf("edgecache: purge: url %q is not on site %q", p.URL, p.Site)
			}
			if p.Site == "" {
				p.Site = host
			}
		} else if !strings.HasPrefix(p.URL, "/") {
			return fmt.Errorf("edgecache: purge: url %q: want /path or an absolute URL", p.URL)
		}
		p.URL = u.RequestURI()
	}
	if p.Prefix != "" && !strings.HasPrefix(p.Prefix, "/") {
		return fmt.Errorf("edgecache: purge: prefix %q: want /path", p.Prefix)
	}
	if p.Tag != "" && strings.ContainsAny(p.Tag, " \t,") {
		return fmt.Errorf("edgecache: purge: tag %q: one tag, no spaces", p.Tag)
	}
	return nil
}

// Purge removes the stored responses p selects and returns how many.
func (s *Store) Purge(p Purge) (int, error) {
	if err := p.check(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.unlockSweep()
	n := 0
	for el := s.lru.Front(); el != nil; {
		next := el.Next()
		if p.matches(el.Value.(*entry).obj) {
			s.removeLocked(el)
			n++
		}
		el = next
	}
	return n, nil
}

func (p *Purge) matches(o *object) bool {
	site, target, _ := strings.Cut(o.URL, " ")
	if p.Site != "" && !strings.EqualFold(site, p.Site) {
		return false
	}
	switch {
	case p.All:
		return true
	case p.URL != "":
		return target == p.URL
	case p.Prefix != "":
		return strings.HasPrefix(target, p.Prefix)
	case p.Tag != "":
		for _, line := range o.Header.Values("Surrogate-Key") {
			for _, k := range strings.Fields(line) {
				if k == p.Tag {
					return true
				}
			}
		}
	}
	return false
}

// AdminPath is the path of the purge API on the cache's listener.
const AdminPath = "/.canopy/cache/purge"

// Admin serves the purge API at AdminPath in front of next: POST a JSON
// Purge, get {"purged": N}. sites are the site names; an absolute purge
// URL whose host is none of them goes to the only site when there is one.
// Only loopback clients may call it (operators run canopy cache purge on
// the box, or through an SSH tunnel); everything else goes to next.
func Admin(st *Store, sites []string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != AdminPath {
			next.ServeHTTP(w, r)
			return
		}
		if !loopback(r.RemoteAddr) {
			http.Error(w, "the cache admin API answers loopback clients only", http.StatusForbidden)
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "POST a JSON purge", http.StatusMethodNotAllowed)
			return
		}
		var p Purge
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			http.Error(w, "bad purge request: "+err.Error(), http.StatusBadRequest)
			return
		}
		if u, err := url.Parse(p.URL); err == nil && u.IsAbs() && p.Site == "" {
			p.Site = u.Hostname()
			known := false
			for _, s := range sites {
				known = known || strings.EqualFold(s, p.Site)
			}
			if !known && len(sites) == 1 {
				p.Site = sites[0]
			}
			p.URL = u.RequestURI()
		}
		n, err := st.Purge(p)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintf(w, "{\"purged\":%d}\n", n)
	})
}

func loopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
