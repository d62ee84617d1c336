package topics

import (
	"strconv"
	"strings"
)

// Roots and fixed topics of the im/ tree (PROTOCOL §4).
const (
	Root      = "im/"
	SysServer = "im/sys/server"
	SysNotice = "im/sys/notice"
	// WillRoot is where wills on topics a device may not publish to are
	// rewritten; nobody may subscribe under $im/.
	WillRoot = "$im/will/"
)

// Downstream per-device channels.
const (
	ChanIn   = "in"
	ChanRPC  = "rpc"
	ChanEph  = "eph"
	ChanCall = "call"
	ChanFile = "f"
)

// Upstream kinds published by a device under im/up/{uid}/{did}/.
const (
	UpMsg  = "msg"
	UpRcpt = "rcpt"
	UpTyp  = "typ"
	UpPres = "pres"
	UpCall = "call"
	UpRPC  = "rpc"
	UpFile = "f"
)

// Device returns the downstream topic of channel ch for one device, e.g.
// im/u/alice/d/p1/in.
func Device(uid, did, ch string) string {
	return "im/u/" + uid + "/d/" + did + "/" + ch
}

// DeviceFilter returns the filter a device subscribes to after CONNACK.
func DeviceFilter(uid, did string) string { return "im/u/" + uid + "/d/" + did + "/#" }

// HoldsRetained reports whether messages matching filter may be retained.
// Only the server publishes under a device's downstream topics (im/u/…;
// Policy admits no client write there) and it never retains them, so a
// subscription to them has no retained message to receive.
func HoldsRetained(filter string) bool { return !strings.HasPrefix(filter, "im/u/") }

// DeviceFileChunk returns the download topic of chunk n of file fid.
func DeviceFileChunk(uid, did, fid string, n int) string {
	return "im/u/" + uid + "/d/" + did + "/f/" + fid + "/" + strconv.Itoa(n)
}

// Presence returns the retained presence topic of uid.
func Presence(uid string) string { return "im/p/" + uid }

// Keys returns the retained key-directory topic of uid.
func Keys(uid string) string { return "im/k/" + uid }

// GroupMeta returns the retained meta topic of group gid.
func GroupMeta(gid string) string { return "im/g/" + gid + "/meta" }

// Up returns the upstream topic of kind for a device, e.g. im/up/alice/p1/msg.
func Up(uid, did, kind string) string { return "im/up/" + uid + "/" + did + "/" + kind }

// Will returns the topic a foreign will is rewritten to.
func Will(uid, did string) string { return WillRoot + uid + "/" + did }

// Upstream is a parsed upstream topic.
type Upstream struct {
	UID, DID string
	Kind     string // one of the Up* constants
	FID      string // file id, for UpFile
	Chunk    int    // chunk number, for UpFile
}

// ParseUp parses an upstream topic im/up/{uid}/{did}/{kind}[/{fid}/{n}].
// ok is false for anything that is not a well-formed upstream topic with
// valid ids and a known kind.
func ParseUp(topic string) (u Upstream, ok bool) {
	rest, found := strings.CutPrefix(topic, "im/up/")
	if !found {
		return u, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) < 3 || CheckUID(parts[0]) != nil || CheckDID(parts[1]) != nil {
		return u, false
	}
	u.UID, u.DID, u.Kind = parts[0], parts[1], parts[2]
	switch u.Kind {
	case UpMsg, UpRcpt, UpTyp, UpPres, UpCall, UpRPC:
		return u, len(parts) == 3
	case UpFile:
		if len(parts) != 5 || !validFID(parts[3]) {
			return u, false
		}
		n, err := strconv.Atoi(parts[4])
		if err != nil || n < 0 || strconv.Itoa(n) != parts[4] {
			return u, false
		}
		u.FID, u.Chunk = parts[3], n
		return u, true
	}
	return u, false
}

// validFID accepts a 26-character Crockford base32 ULID.
func validFID(s string) bool {
	if len(s) != 26 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z') || c == 'I' || c == 'L' || c == 'O' || c == 'U' {
			return false
		}
	}
	return true
}

// HasWildcard reports whether a filter has + or # anywhere.
func HasWildcard(filter string) bool { return strings.ContainsAny(filter, "+#") }

// Match reports whether topic name matches filter under MQTT rules
// (+ one level, # the rest; wildcards do not match a leading $).
func Match(filter, topic string) bool { return Covers(filter, topic) }

// Covers reports whether every topic matched by sub is also matched by
// filter. With sub a plain topic name it is MQTT matching; with sub a filter
// it is the subset test used to judge a subscription against an ACL rule.
func Covers(filter, sub string) bool {
	if strings.HasPrefix(sub, "$") && !strings.HasPrefix(filter, "$") {
		return false // [MQTT-4.7.2-1]
	}
	for {
		f, frest, fmore := strings.Cut(filter, "/")
		s, srest, smore := strings.Cut(sub, "/")
		switch {
		case f == "#":
			return true
		case s == "#":
			return false // sub takes more than filter allows here
		case f == "+":
			// any single level, + included
		case s == "+" || f != s:
			return false
		}
		if fmore != smore {
			// "a/#" covers "a": # also matches the parent level.
			return !smore && frest == "#"
		}
		if !fmore {
			return true
		}
		filter, sub = frest, srest
	}
}
