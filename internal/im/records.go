package im

import (
	"time"

	"github.com/oklog/ulid/v2"
)

// Group roles.
const (
	RoleOwner  = "owner"
	RoleAdmin  = "admin"
	RoleMember = "member"
)

// Group is a group's record. Its JSON is the stored form in the Badger
// store (docs/storage.md).
type Group struct {
	GID     string `json:"gid"`
	Name    string `json:"name"`
	Avatar  string `json:"avatar,omitempty"`
	Owner   string `json:"owner"`
	V       uint64 `json:"v"`
	N       int    `json:"n"`
	Created int64  `json:"created"`
}

// CV is the group's conversation id.
func (g Group) CV() string { return "g:" + g.GID }

// Member is one user's membership of a group: the role, and the seq
// window of the conversation the user may read: From is the seq of the
// event that added them, To the one that removed them (0 while they are a
// member).
type Member struct {
	Role string `json:"role"`
	From uint64 `json:"from"`
	To   uint64 `json:"to,omitempty"`
}

// Current reports whether the record is a present membership.
func (m Member) Current() bool { return m.Role != "" && m.To == 0 }

// Admin reports whether the member may manage the group (owner or admin).
func (m Member) Admin() bool { return m.Role == RoleOwner || m.Role == RoleAdmin }

// Window is the membership window: the seq range of the conversation the
// member may read (history, msg.get, conv.list).
func (m Member) Window() Window {
	w := Window{From: m.From, To: m.To}
	if !m.Current() && w.To == 0 { // a past member always has To; be safe
		w.To = w.From
	}
	return w
}

// Window is a seq range of a conversation, both ends included; To 0 is
// open (a current member).
type Window struct {
	From, To uint64
}

// Open is the window of a DM: every event from seq 1.
var Open = Window{From: 1}

// Contains reports whether seq lies inside the window.
func (w Window) Contains(seq uint64) bool {
	return seq >= w.From && (w.To == 0 || seq <= w.To)
}

// Prefs are what a device negotiated in `hello` (PROTOCOL §9).
type Prefs struct {
	CBOR   bool // events on the device's own topics are CBOR
	MaxPkt int  // largest event the device accepts; 0 means the broker max
	Typing bool // wants typing notifications
	Calls  bool
	Files  bool
}

// DefaultPrefs apply until a device says hello.
var DefaultPrefs = Prefs{Typing: true, Calls: true, Files: true}

// Presence is a user's presence as published on im/p/{uid} (PROTOCOL §8)
// and answered by presence.get. Its JSON is the wire shape and the stored
// form (codec.Presence is this type).
type Presence struct {
	// S is the status: on, off, away or busy.
	S string `json:"s" cbor:"s"`
	// PV is the presence version; it strictly increases with every
	// publication of the user's presence.
	PV uint64 `json:"pv" cbor:"pv"`
	// LS is last seen, in Unix milliseconds.
	LS int64 `json:"ls" cbor:"ls"`
	// D is the number of connected devices.
	D int `json:"d" cbor:"d"`
	// TX is the status text.
	TX string `json:"tx,omitempty" cbor:"tx,omitempty"`
}

// Append is one event for the Log to sequence and persist, with the
// side effects that commit atomically with it. The Log fills Event's ID,
// Seq and TS (Aux events get none of them), CV from the Append, and
// appends the event to the stream of each user in To.
type Append struct {
	CV    string
	Event Event
	// Aux events (read/delivered marks) live in a side log of the
	// conversation: they have no id and no seq.
	Aux bool
	// To are the users whose streams get the event.
	To []string
	// Dedupe: when CMID is set, (UID, DID, CMID) → this event is recorded
	// and a repeat returns the original instead (Dup).
	UID, DID, CMID string
	// TTL > 0 makes the event (and its stream entries) expire.
	TTL time.Duration

	// Side effects.
	Members   []MemberChange
	Group     *Group
	Markers   []Marker
	Reacts    []React
	UserConvs []UserConv

	// Purge marks a message deleted in the same commit (the side effect
	// of a del event).
	Purge *Purge

	// Quiet names a device (uid, did) that gets no live copy of the event
	// (the origin of a marker). Delivery reads it; the Log ignores it.
	QuietUID, QuietDID string

	// reserved: a holds a slot of the CommitStream (Reserve); lanes:
	// how many of its lanes have not delivered it yet.
	reserved bool
	lanes    laneCount

	// Results, set by the Log once Append returns without error.
	US []uint64 // the us assigned in each To stream
	// Dup is set instead when CMID was seen before; when that command's
	// event is gone (trimmed or expired) nothing is appended, US stays
	// nil and Dup too.
	Dup *Event
}

// Committed reports whether the append was written (not a duplicate).
func (a *Append) Committed() bool { return a.US != nil && a.Dup == nil }

// SenderUS is the us the event got in its sender's own stream, 0 when
// the sender is not among the recipients.
func (a *Append) SenderUS() uint64 {
	for i, uid := range a.To {
		if uid == a.UID && i < len(a.US) {
			return a.US[i]
		}
	}
	return 0
}

// Purge marks message ID and its edits Deleted; unless Keep (a legal
// hold covers it) their bodies are removed from the store too.
type Purge struct {
	ID   ulid.ULID
	Keep bool
	// Forgotten is set by the Log: the events whose bodies users can no
	// longer read (for the Forgetter).
	Forgotten []Forgotten
}

// MemberChange writes uid's membership record of gid. With SetFrom the
// record's From becomes the appended event's seq; with SetTo its To does.
type MemberChange struct {
	GID, UID       string
	Rec            Member
	SetFrom, SetTo bool
}

// Marker is a read or delivered marker. Markers only move forward: the
// Log keeps the larger of the stored and the new Upto.
type Marker struct {
	CV, UID, K string
	Upto       uint64
}

// React sets (On) or clears uid's reaction K on message ID.
type React struct {
	ID  ulid.ULID
	UID string
	K   string
	On  bool
}

// UserConv adds (or, with Remove, drops) cv on uid's conversation list.
type UserConv struct {
	UID, CV string
	Remove  bool
}
