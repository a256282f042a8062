package enroll

import (
	"fmt"
	"slices"
)

// Scope is what an admin token may do. Each scope includes those before
// it: read < operate < admin.
type Scope string

// Scopes.
const (
	// ScopeRead: list and show (machines, users, disks, images, boots),
	// explain, and the status page.
	ScopeRead Scope = "read"
	// ScopeOperate: read, and run the fleet: approve, reset, rotate and
	// delete machines, publish and roll back images, remove disks, gc.
	ScopeOperate Scope = "operate"
	// ScopeAdmin: everything: users and their passwords, admin tokens,
	// and the backup (which holds every CHAP secret).
	ScopeAdmin Scope = "admin"
)

var scopes = []Scope{ScopeRead, ScopeOperate, ScopeAdmin}

// ParseScope reads a scope's name.
func ParseScope(s string) (Scope, error) {
	if !slices.Contains(scopes, Scope(s)) {
		return "", fmt.Errorf("scope %q: want read, operate or admin", s)
	}
	return Scope(s), nil
}

// Allows reports whether a token of scope s may do what needs.
func (s Scope) Allows(needs Scope) bool {
	have, want := slices.Index(scopes, s), slices.Index(scopes, needs)
	return have >= 0 && want >= 0 && have >= want
}
