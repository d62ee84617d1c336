package topics

import "strings"

// Identity is who a connection is, as established at CONNECT.
type Identity struct {
	UID, DID  string
	Admin     bool // may read $SYS/
	Anonymous bool // connected without credentials on a listener that allows it
}

// Relations answers the relationship questions of the §10 rules. The
// implementation does I/O; the decision itself stays pure. A nil Relations
// grants nothing beyond the user's own topics.
type Relations interface {
	// Visible reports whether other is in C(uid): a contact or a co-member
	// of one of uid's groups, and not blocked either way.
	Visible(uid, other string) bool
	// Member reports whether uid is a member of group gid.
	Member(uid, gid string) bool
}

// Access is what a plain-namespace rule grants.
type Access uint8

// Access values of a Rule.
const (
	Deny Access = iota
	Read
	Write
	ReadWrite
)

// Rule governs the plain-MQTT namespace (everything outside im/ and $).
// Rules are tried in order; the first whose filter covers the topic and
// whose subjects include the client decides. No match is a denial.
type Rule struct {
	// Filter is an MQTT filter; the level "{uid}" stands for the client's
	// own user id, so "dev/{uid}/#" gives each user a private subtree.
	Filter string
	Access Access
	// Users lists the user ids the rule applies to; "all" means every
	// authenticated user.
	Users []string
	// Anonymous makes the rule apply to anonymous clients too.
	Anonymous bool
}

func (r *Rule) applies(id Identity) bool {
	if id.Anonymous {
		return r.Anonymous
	}
	for _, u := range r.Users {
		if u == "all" || u == id.UID {
			return true
		}
	}
	return false
}

func (r *Rule) grants(write bool) bool {
	if write {
		return r.Access == Write || r.Access == ReadWrite
	}
	return r.Access == Read || r.Access == ReadWrite
}

// Policy is the complete access policy: the fixed im/ rules of §10 and the
// configured plain-namespace rules.
type Policy struct {
	Rules     []Rule
	Relations Relations
}

// Allow decides whether id may publish to (write) or subscribe to and
// receive from (read) topic, which for reads may be a filter. It is deny by
// default.
func (p *Policy) Allow(id Identity, topic string, write bool) bool {
	switch {
	case topic == "":
		return false
	case strings.HasPrefix(topic, SharePrefix):
		// A shared subscription is judged by its filter: allowed only in
		// the plain namespace, as the rules allow; never over im/ or $.
		filter, ok := shareFilter(topic)
		return ok && !write && !strings.HasPrefix(filter, "$") && filter != "im" &&
			!strings.HasPrefix(filter, Root) && p.allowPlain(id, filter, false)
	case strings.HasPrefix(topic, "$"):
		if write {
			// Publishing under $ is accepted and discarded (the acl
			// hook never routes it), as MQTT allows: nobody can
			// subscribe there, and a 3.1.1 client is not disconnected.
			return !strings.HasPrefix(topic, "$SYS")
		}
		// $SYS/ is readable by admins; $im/ and anything else under $
		// is closed to clients.
		return id.Admin && !id.Anonymous && (topic == "$SYS" || strings.HasPrefix(topic, "$SYS/"))
	case topic == "im" || strings.HasPrefix(topic, Root):
		if id.Anonymous {
			return false
		}
		if write {
			return p.allowUp(id, topic)
		}
		return p.allowDown(id, topic)
	}
	return p.allowPlain(id, topic, write)
}

// allowUp admits a device's own upstream topics only.
func (p *Policy) allowUp(id Identity, topic string) bool {
	rest, ok := strings.CutPrefix(topic, "im/up/"+id.UID+"/"+id.DID+"/")
	return ok && rest != "" && !HasWildcard(rest)
}

// allowDown applies the §10 subscribe rules.
func (p *Policy) allowDown(id Identity, filter string) bool {
	own := "im/u/" + id.UID + "/d/" + id.DID + "/"
	if rest, ok := strings.CutPrefix(filter, own); ok {
		// The own device filter with a trailing # and any exact child.
		return rest == "#" || (rest != "" && !HasWildcard(rest))
	}
	if HasWildcard(filter) {
		return false
	}
	switch filter {
	case SysServer, SysNotice:
		return true
	}
	parts := strings.Split(filter, "/")
	switch {
	case len(parts) == 3 && (parts[1] == "p" || parts[1] == "k"):
		x := parts[2]
		if x == id.UID {
			return true
		}
		return CheckUID(x) == nil && p.Relations != nil && p.Relations.Visible(id.UID, x)
	case len(parts) == 4 && parts[1] == "g" && parts[3] == "meta":
		return CheckGID(parts[2]) == nil && p.Relations != nil && p.Relations.Member(id.UID, parts[2])
	}
	return false
}

// allowPlain applies the configured rules outside im/.
func (p *Policy) allowPlain(id Identity, topic string, write bool) bool {
	if write && HasWildcard(topic) {
		return false
	}
	for i := range p.Rules {
		r := &p.Rules[i]
		if !r.applies(id) {
			continue
		}
		filter := r.Filter
		if strings.Contains(filter, "{uid}") {
			if id.Anonymous {
				continue
			}
			filter = strings.ReplaceAll(filter, "{uid}", id.UID)
		}
		if Covers(filter, topic) {
			return r.grants(write)
		}
	}
	return false
}

// SharePrefix starts a shared subscription: $share/{group}/{filter}.
const SharePrefix = "$share/"

// shareFilter returns the filter of a shared subscription.
func shareFilter(topic string) (string, bool) {
	rest := strings.TrimPrefix(topic, SharePrefix)
	group, filter, ok := strings.Cut(rest, "/")
	if !ok || group == "" || filter == "" || HasWildcard(group) {
		return "", false
	}
	return filter, true
}
