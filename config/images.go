package config

import (
	"fmt"
	"os"
	"strings"
)

// ImagePolicy is one [[images.policy]] table: manifests of repositories
// named Prefix or "<Prefix>/..." (as clients name them, upstream prefix
// included) are served only with a cosign signature made with the key.
type ImagePolicy struct {
	Prefix string `toml:"prefix"`
	// PublicKey is the path of a PEM public key (ECDSA P-256 or Ed25519,
	// e.g. cosign.pub); it is parsed when the cache starts.
	PublicKey string `toml:"public_key"`
}

// resolvePolicy checks the [[images.policy]] tables.
func (im *ImagesConfig) resolvePolicy() error {
	seen := map[string]bool{}
	for i, p := range im.Policy {
		if p.Prefix == "" || strings.HasPrefix(p.Prefix, "/") || strings.HasSuffix(p.Prefix, "/") || strings.ContainsAny(p.Prefix, " \t\n@") {
			return fmt.Errorf("config: images.policy[%d]: prefix %q: want a repository name or its leading components, e.g. \"docker.io/myorg\"", i, p.Prefix)
		}
		if seen[p.Prefix] {
			return fmt.Errorf("config: images.policy[%d]: prefix %q used twice", i, p.Prefix)
		}
		seen[p.Prefix] = true
		if p.PublicKey == "" {
			return fmt.Errorf("config: images.policy[%d] (prefix %q): no public_key", i, p.Prefix)
		}
		if _, err := os.Stat(p.PublicKey); err != nil {
			return fmt.Errorf("config: images.policy[%d] (prefix %q): public_key: %v", i, p.Prefix, err)
		}
	}
	return nil
}
