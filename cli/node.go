package cli

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"path/filepath"
	"time"

	"canopy/auth"
	"canopy/ledger"
)

func init() {
	register(command{
		name:    "node enroll",
		summary: "create a node key and its enrolment signed by the event key (offline)",
		run:     runNodeEnroll,
	})
}

// defaultEnrolmentGrace is how long after the event's end an enrolment
// stays valid by default, so nodes can still sync and reconcile.
const defaultEnrolmentGrace = 7 * 24 * time.Hour

func runNodeEnroll(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "node enroll", "--event DIR --name NAME --role edge|hub --out NODEDIR [--valid-until RFC3339 | --ttl DURATION]")
	evPath := fs.String("event", "", "event directory holding event.json and event.key (required)")
	name := fs.String("name", "", "node name, e.g. edge-north (required)")
	role := fs.String("role", "", "node role: edge or hub (required)")
	until := fs.String("valid-until", "", "end of the enrolment, RFC 3339 with offset (default: 7 days after the event ends)")
	ttl := fs.String("ttl", "", "length of the enrolment from now, e.g. 72h or 30d (instead of --valid-until)")
	out := fs.String("out", "", "node directory to write node.key and enrolment.token into (required)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	switch {
	case *evPath == "":
		return usageErrorf("--event is required")
	case *name == "":
		return usageErrorf("--name is required")
	case *role == "":
		return usageErrorf("--role is required (edge or hub)")
	case *role != auth.NodeEdge && *role != auth.NodeHub:
		return usageErrorf("--role: %q is not a node role (want edge or hub)", *role)
	case *out == "":
		return usageErrorf("--out is required")
	case *until != "" && *ttl != "":
		return usageErrorf("give --valid-until or --ttl, not both")
	}
	ev, key, err := loadCeremony(*evPath)
	if err != nil {
		return err
	}
	now := ceremonyNow()
	validUntil := ev.EndsAt.Add(defaultEnrolmentGrace)
	if *until != "" {
		if validUntil, err = parseTimeFlag("valid-until", *until); err != nil {
			return err
		}
	}
	if *ttl != "" {
		d, err := parseTTLFlag("ttl", *ttl)
		if err != nil {
			return err
		}
		validUntil = now.Add(d)
	}
	if !validUntil.After(now) {
		return usageErrorf("the enrolment would end %s, which is already past; give --valid-until or --ttl", validUntil.Format(time.RFC3339))
	}
	nodeKey, tok, err := auth.EnrollNode(key, ev, *name, *role, now.Add(-skewAllowance).Truncate(time.Second), validUntil)
	if err != nil {
		return authError(err)
	}
	if err := auth.WriteNode(*out, nodeKey, tok); err != nil {
		return authError(err)
	}
	id := ledger.NodeIDOf(nodeKey.Public().(ed25519.PublicKey))
	fmt.Fprintln(e.stdout, id)
	fmt.Fprintf(e.stderr, "Enrolled %s %q in event %s as node %s, valid until %s.\n  %s (SECRET, 0600)\n  %s\n",
		*role, *name, ev.Slug, id, validUntil.In(ev.Location()).Format(time.RFC3339),
		filepath.Join(*out, auth.NodeKeyFile), filepath.Join(*out, auth.EnrolmentFileName))
	return nil
}
