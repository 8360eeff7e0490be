package cli

import (
	"context"
	"fmt"
	"slices"
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
	fs := newFlagSet(e, "token issue", "--event DIR --role "+roleList+" --device NAME [--vendor ID] [--permit "+strings.Join(auth.Permissions, "|")+"]... --ttl DURATION")
	evPath := fs.String("event", "", "event directory holding event.json and event.key (required)")
	role := fs.String("role", "", "what the device may do: "+roleList+" (required)")
	device := fs.String("device", "", "device name, e.g. till-3 (required)")
	vendor := fs.String("vendor", "", "vendor id the device is bound to (optional)")
	var permits permitList
	fs.Var(&permits, "permit", "an extra permission ("+strings.Join(auth.Permissions, ", ")+"); repeat or separate with commas")
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
		Event:       ev.Slug,
		Role:        auth.Role(*role),
		Name:        *device,
		Vendor:      *vendor,
		Permissions: permits,
		IssuedAt:    now,
		NotBefore:   now.Add(-skewAllowance),
		Expires:     now.Add(d),
	})
	if err != nil {
		return authError(err)
	}
	fmt.Fprintln(e.stdout, tok)
	return nil
}

// permitList collects --permit values, repeated or comma-separated.
type permitList []string

func (p *permitList) String() string { return strings.Join(*p, ",") }

func (p *permitList) Set(v string) error {
	for x := range strings.SplitSeq(v, ",") {
		x = strings.TrimSpace(x)
		if !slices.Contains(auth.Permissions, x) {
			return fmt.Errorf("%q is not a permission (want %s)", x, strings.Join(auth.Permissions, ", "))
		}
		*p = append(*p, x)
	}
	return nil
}
