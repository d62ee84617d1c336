package codec

import "github.com/tern-im/tern/internal/im"

// Argument and result structs of the RPC ops (§9).

// HelloArgs are the arguments of `hello`.
type HelloArgs struct {
	Enc    string `json:"enc,omitempty" cbor:"enc,omitempty"`
	MaxPkt int    `json:"maxPkt,omitempty" cbor:"maxPkt,omitempty"`
	Feat   *Feat  `json:"feat,omitempty" cbor:"feat,omitempty"`
}

// Feat are the optional features a device asks for; absent means on.
type Feat struct {
	Typing *bool `json:"typing,omitempty" cbor:"typing,omitempty"`
	Calls  *bool `json:"calls,omitempty" cbor:"calls,omitempty"`
	Files  *bool `json:"files,omitempty" cbor:"files,omitempty"`
}

// HelloResult is the result of `hello`.
type HelloResult struct {
	Now    int64  `json:"now" cbor:"now"`
	Epoch  uint64 `json:"epoch" cbor:"epoch"`
	Limits Limits `json:"limits" cbor:"limits"`
	USHead uint64 `json:"us_head" cbor:"us_head"`
}

// Limits tells a device what the server enforces.
type Limits struct {
	MaxPkt   int `json:"maxPkt" cbor:"maxPkt"`
	MaxBody  int `json:"maxBody" cbor:"maxBody"`
	Burst    int `json:"burst" cbor:"burst"`
	Rate     int `json:"rate" cbor:"rate"` // messages per second, sustained
	MaxSync  int `json:"maxSync" cbor:"maxSync"`
	MaxPage  int `json:"maxPage" cbor:"maxPage"`
	MaxGroup int `json:"maxGroup" cbor:"maxGroup"`
}

// SyncArgs are the arguments of `sync`.
type SyncArgs struct {
	Since    uint64 `json:"since" cbor:"since"`
	Max      int    `json:"max,omitempty" cbor:"max,omitempty"`
	MaxBytes int    `json:"maxBytes,omitempty" cbor:"maxBytes,omitempty"`
}

// SyncResult is the result of `sync`.
type SyncResult struct {
	Ev     []Event  `json:"ev" cbor:"ev"`
	Next   uint64   `json:"next" cbor:"next"`
	More   bool     `json:"more" cbor:"more"`
	Reset  bool     `json:"reset,omitempty" cbor:"reset,omitempty"`
	Convs  []string `json:"convs,omitempty" cbor:"convs,omitempty"`
	USHead uint64   `json:"us_head,omitempty" cbor:"us_head,omitempty"`
}

// HistoryArgs are the arguments of `history`. Before and After are
// exclusive seqs; with neither, the newest page is returned.
type HistoryArgs struct {
	CV     string `json:"cv" cbor:"cv"`
	Before uint64 `json:"before,omitempty" cbor:"before,omitempty"`
	After  uint64 `json:"after,omitempty" cbor:"after,omitempty"`
	Max    int    `json:"max,omitempty" cbor:"max,omitempty"`
}

// HistoryResult is the result of `history`.
type HistoryResult struct {
	Items    []Event `json:"items" cbor:"items"`
	First    uint64  `json:"first" cbor:"first"`
	Last     uint64  `json:"last" cbor:"last"`
	Complete bool    `json:"complete" cbor:"complete"`
}

// Conv is one entry of `conv.list`.
type Conv struct {
	CV     string `json:"cv" cbor:"cv"`
	Seq    uint64 `json:"seq" cbor:"seq"`
	Unread uint64 `json:"unread" cbor:"unread"`
	Last   *Event `json:"last,omitempty" cbor:"last,omitempty"`
	Read   uint64 `json:"read" cbor:"read"`
	Muted  bool   `json:"muted" cbor:"muted"`
}

// ConvListResult is the result of `conv.list`.
type ConvListResult struct {
	Convs []Conv `json:"convs" cbor:"convs"`
}

// IDArgs are the arguments of `msg.get`.
type IDArgs struct {
	ID string `json:"id" cbor:"id"`
}

// UIDArgs are the arguments of the contacts.* ops.
type UIDArgs struct {
	UID string `json:"uid" cbor:"uid"`
}

// ContactsResult is the result of the contacts.* ops.
type ContactsResult struct {
	Contacts []string `json:"contacts" cbor:"contacts"`
	Blocked  []string `json:"blocked" cbor:"blocked"`
}

// GroupArgs are the arguments of the group.* ops; each op reads the
// fields it needs.
type GroupArgs struct {
	GID     string   `json:"gid,omitempty" cbor:"gid,omitempty"`
	Name    *string  `json:"name,omitempty" cbor:"name,omitempty"`
	Avatar  *string  `json:"avatar,omitempty" cbor:"avatar,omitempty"`
	Members []string `json:"members,omitempty" cbor:"members,omitempty"`
	UIDs    []string `json:"uids,omitempty" cbor:"uids,omitempty"`
	UID     string   `json:"uid,omitempty" cbor:"uid,omitempty"`
	Role    string   `json:"role,omitempty" cbor:"role,omitempty"`
}

// GroupCreated is the result of `group.create`.
type GroupCreated struct {
	GID string `json:"gid" cbor:"gid"`
	CV  string `json:"cv" cbor:"cv"`
}

// Member is one group member.
type Member struct {
	UID  string `json:"uid" cbor:"uid"`
	Role string `json:"role" cbor:"role"`
}

// MembersResult is the result of `group.members`, `group.add` and
// `group.remove`.
type MembersResult struct {
	Members []Member `json:"members" cbor:"members"`
}

// GroupMeta is the retained payload of im/g/{gid}/meta (always JSON).
type GroupMeta struct {
	Name   string `json:"name"`
	Avatar string `json:"avatar,omitempty"`
	N      int    `json:"n"`
	V      uint64 `json:"v"`
}

// PresenceGetArgs are the arguments of `presence.get`.
type PresenceGetArgs struct {
	UIDs []string `json:"uids" cbor:"uids"`
}

// Presence is one user's presence (PROTOCOL §8), the shape of im/p/{uid}
// (the domain's im.Presence).
type Presence = im.Presence

// PresenceGetResult is the result of `presence.get`: the users the caller
// may see that have a presence; the others are absent.
type PresenceGetResult struct {
	P map[string]Presence `json:"p" cbor:"p"`
}

// PresenceEvent is a watched presence change on a device's `…/eph`:
// `{"t":"pres","uid":…}` with the presence fields.
type PresenceEvent struct {
	T   string `json:"t" cbor:"t"`
	UID string `json:"uid" cbor:"uid"`
	Presence
}
