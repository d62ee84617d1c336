package im

import "github.com/oklog/ulid/v2"

// The ports: what the IM core needs from storage, each named for what it
// does and carrying the domain's own types. internal/store implements
// them over Badger; internal/im/imtest is the conformance suite that any
// implementation must pass. All methods are safe for concurrent use.
//
// Errors: ErrNotFound for a missing record, ErrClosed once the store
// shuts down; anything else is a backend fault.

// Log appends events: the only write path of conversations and streams.
type Log interface {
	// Append sequences and durably commits the appends, in order, and
	// returns once all are committed (or failed). For each committed
	// Append it assigns Event.ID (a ULID, increasing), Event.Seq (the
	// next position of the conversation: gap-free from 1, never reused;
	// Aux events get none), Event.TS (milliseconds, never going back) and
	// one US per user in To (the next position of that user's stream:
	// gap-free from 1, never reused), writes the side effects in the same
	// commit, and publishes the Append on the CommitStream the store was
	// opened with (in commit order, so in per-user stream order). A repeat
	// of (UID, DID, CMID) commits nothing and sets Dup to the original
	// event (its US that of the sender's stream), or leaves Dup and US nil
	// when the original is gone.
	Append(as ...*Append) error
}

// StreamReader reads users' streams.
type StreamReader interface {
	// USHead is the last us of uid's stream (0 when empty). It never goes
	// backwards and is at least the US of every Append that has returned.
	USHead(uid string) (uint64, error)
	// Stream reads up to max events of uid's stream with us > since, in
	// order, each with its US; more reports whether the stream goes on.
	// Expired events are skipped. ErrTrimmed: events after since were
	// trimmed by age (the device starts over from USHead).
	Stream(uid string, since uint64, max int) (evs []Event, more bool, err error)
	// Deduped returns the event an earlier command (uid, did, cmid)
	// produced (US: the sender's), ErrNotFound for a new command, ErrGone
	// when its event no longer exists.
	Deduped(uid, did, cmid string) (Event, error)
}

// HistoryQuery is a page of a conversation: with After > 0 the first
// events after it, else the last ones before Before (0: the newest), all
// inside Window.
type HistoryQuery struct {
	CV            string
	Window        Window
	Before, After uint64
	Max           int
}

// ConvReader reads conversations.
type ConvReader interface {
	// History returns a page in ascending seq order; complete reports
	// that nothing more lies in the direction read.
	History(q HistoryQuery) (items []Event, complete bool, err error)
	// EventByID returns the conversation event with id (ErrNotFound when
	// unknown or expired).
	EventByID(id ulid.ULID) (Event, error)
	// ConvSeq is the last seq of cv (0 when empty).
	ConvSeq(cv string) (uint64, error)
	// UserConvs lists the conversations on uid's list.
	UserConvs(uid string) ([]string, error)
	// DMFloor is the last seq of DM cv that a deleted earlier account of
	// uid could read (0 if none): uid reads only later seqs.
	DMFloor(cv, uid string) (uint64, error)
}

// Groups reads group records and memberships (written by Log.Append).
type Groups interface {
	Group(gid string) (Group, error)
	// AllGroups calls fn for every group, in gid order.
	AllGroups(fn func(Group) error) error
	// Member is uid's record of gid, current or past (ErrNotFound if
	// never a member).
	Member(gid, uid string) (Member, error)
	// Members returns the current members with their records, and their
	// uids in order.
	Members(gid string) (map[string]Member, []string, error)
	// Groups lists the groups uid is a current member of.
	Groups(uid string) ([]string, error)
}

// Contacts is the roster and the blocks.
type Contacts interface {
	Contacts(uid string) ([]string, error)
	IsContact(uid, other string) (bool, error)
	// Blocked lists whom uid blocks; BlockedBy who blocks uid.
	Blocked(uid string) ([]string, error)
	BlockedBy(uid string) ([]string, error)
	// Blocks reports whether a blocks b.
	Blocks(a, b string) (bool, error)
	SetContact(uid, other string, on bool) error
	SetBlock(uid, other string, on bool) error
	// DMPeer answers in one read what a DM from uid to other needs:
	// whether other exists, and whether either blocks the other.
	DMPeer(uid, other string) (exists, blocked bool, err error)
}

// Marks reads markers and reactions (written by Log.Append).
type Marks interface {
	// Marker is uid's marker of kind k ("read" or "dlv") in cv, 0 if none.
	Marker(cv, uid, k string) (uint64, error)
	// Reacted reports whether uid has reaction k on message id.
	Reacted(id ulid.ULID, uid, k string) (bool, error)
}

// Directory looks users up.
type Directory interface {
	// UserExists reports whether uid is an account.
	UserExists(uid string) (bool, error)
}

// PresenceStore keeps each user's last published presence.
type PresenceStore interface {
	// Presence is uid's stored presence, ErrNotFound if never seen.
	Presence(uid string) (Presence, error)
	// Presences returns those of uids that have one.
	Presences(uids []string) (map[string]Presence, error)
	// PutPresence stores p. A store that several nodes write (cluster
	// mode) refuses a p whose PV is not greater than the stored one with
	// ErrStale, so that pv only grows; a single node's one writer never
	// meets that.
	PutPresence(uid string, p Presence) error
	PutPresences(ps map[string]Presence) error
	// RangePresence calls fn for every stored presence until fn fails.
	RangePresence(fn func(uid string, p Presence) error) error
}

// Store is every port together: what one backend provides.
type Store interface {
	Log
	StreamReader
	ConvReader
	Groups
	Contacts
	Marks
	Directory
	PresenceStore
}
