package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"canopy/auth"
)

func init() {
	register(command{
		name:    "token issue",
		summary: "sign a device token (pos, door, auctioneer, bidder, organizer, admin) and print it",
		run:     runTokenIssue,
	})
}

func runTokenIssue(ctx context.Context, e *env, args []string) error {
	roles := make([]string, len(auth.Roles))
	for i, r := range auth.Roles {
		roles[i] = string(r)
	}
	roleList := strings.Join(roles, "|")
	fs := newFlagSet(e, "token issue", "--event DIR --role "+roleList+" --device NAME [--vendor ID] --ttl DURATION")
	evPath := fs.String("event", "", "event directory holding event.json and event.key (required)")
	role := fs.String("role", "", "what the device may do: "+roleList+" (required)")
	device := fs.String("device", "", "device name, e.g. till-3 (required)")
	vendor := fs.String("vendor", "", "vendor id the device is bound to (optional)")
	ttl := fs.String("ttl", "", "how long the token is valid from now, e.g. 12h or 3d (required)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	switch {
	case *evPath == "":
		return usageErrorf("--event is required")
	case *role == "":
		return usageErrorf("--role is required (%s)", roleList)
	case !auth.ValidRole(auth.Role(*role)):
		return usageErrorf("--role: %q is not a role (want %s)", *role, roleList)
	case *device == "":
		return usageErrorf("--device is required")
	case *ttl == "":
		return usageErrorf("--ttl is required, e.g. --ttl 12h")
	}
	d, err := parseTTLFlag("ttl", *ttl)
	if err != nil {
		return err
	}
	ev, key, err := loadCeremony(*evPath)
	if err != nil {
		return err
	}
	now := ceremonyNow().Truncate(time.Second)
	tok, err := auth.IssueDevice(key, auth.Device{
		Event:     ev.Slug,
		Role:      auth.Role(*role),
		Name:      *device,
		Vendor:    *vendor,
		IssuedAt:  now,
		NotBefore: now.Add(-skewAllowance),
		Expires:   now.Add(d),
	})
	if err != nil {
		return authError(err)
	}
	fmt.Fprintln(e.stdout, tok)
	return nil
}
