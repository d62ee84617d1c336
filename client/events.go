package client

import (
	"strconv"

	"github.com/tern-im/tern/internal/codec"
)

// Event is what a Client hands its handler: one of *Message, *Edit,
// *Delete, *Reaction, *Mark, *Member and *Other (stream events, which
// also implement StreamEvent), *Reset (the cursor moved without events),
// *Typing, *Presence and *Error.
type Event interface{ isEvent() }

// StreamEvent is an event of the user's stream (PROTOCOL §5): it has a
// position US, gap-free per user.
type StreamEvent interface {
	Event
	Stream() *Header
}

// Header is what every stream event carries. ID is the event's ULID in
// text form; TS is server time in Unix milliseconds.
type Header struct {
	US   uint64
	ID   string
	CV   string
	Seq  uint64
	From string // sender uid
	FD   string // sender device
	TS   int64
	CMID string // the sender's client id of the command (own events)
}

// Stream returns h.
func (h *Header) Stream() *Header { return h }

func (*Header) isEvent() {}

// Message is a message (`t:"msg"`). Trunc means B was cut to fit the
// device's packet size; Client.Call("msg.get") returns all of it.
type Message struct {
	Header
	CT    string // content type, default text/plain
	B     string
	Re    string // reply-to id
	Th    string // thread root id
	Mn    []string
	TTL   int64
	Trunc bool
	// Att are the attached files (Download reads them by FID).
	Att []Attachment
}

// Attachment is a file attached to a message (§11): FID, name N, size Z,
// sniffed type CT, SHA-256 H, and W×HH pixels for an image.
type Attachment = codec.Att

// Edit replaces the body of message Target.
type Edit struct {
	Header
	Target string
	B      string
}

// Delete removes message Target.
type Delete struct {
	Header
	Target string
}

// Reaction adds K to message Target, or removes it (Removed).
type Reaction struct {
	Header
	Target  string
	K       string
	Removed bool
}

// Mark is a receipt (§6): From has received (K "dlv") or read (K "read")
// CV up to seq Upto.
type Mark struct {
	Header
	K    string
	Upto uint64
}

// Member is a membership change of a group (§5).
type Member struct {
	Header
	Op   string // add, remove, leave, role
	Who  []string
	By   string
	Role string
}

// Other is a stream event this package does not model (conv, key, sys,
// call-log, …); T is its type. The cursor moves past it like any other.
type Other struct {
	Header
	T string
}

// Reset means the cursor moved to US without events in between: the
// device started at the stream head (Options.StartAtHead), the stream no
// longer holds the events after the cursor (sync answered reset; Convs are
// the conversations to refetch with history), or the stream itself had a
// hole (Hole). Persist US like an event's.
type Reset struct {
	US    uint64
	Convs []string
	Hole  bool
}

func (*Reset) isEvent() {}

// Typing is another member's typing state (§7), never stored.
type Typing struct {
	CV   string
	From string
	S    string // "c" composing, "p" paused
	TTL  int64  // seconds the state holds unless renewed
}

func (*Typing) isEvent() {}

// Presence is a user's presence (§8), from the retained im/p/{uid} or a
// watched change on the device's …/eph. Drop PV ≤ the last one seen for
// UID.
type Presence struct {
	UID string
	S   string // on, off, away, busy
	PV  uint64
	LS  int64 // last seen, Unix ms
	D   int   // connected devices
	TX  string
}

func (*Presence) isEvent() {}

// Error is a refused command (`t:"err"` on the device's …/rpc): CMID names
// the message it refused ("" when the payload could not be parsed). 429
// and 503 are retried by the client and not reported.
type Error struct {
	CMID string
	Code int
	Msg  string
}

func (*Error) isEvent() {}

func (e *Error) Error() string { return "tern: error " + strconv.Itoa(e.Code) + ": " + e.Msg }

// fromCodec turns a decoded stream event into its typed form.
func fromCodec(e *codec.Event) StreamEvent {
	h := Header{US: e.US, CV: e.CV, Seq: e.Seq, From: e.From, FD: e.FD, TS: e.TS, CMID: e.CMID}
	if !e.ID.IsZero() {
		h.ID = e.ID.String()
	}
	tgt := ""
	if e.Tgt != nil {
		tgt = e.Tgt.String()
	}
	switch e.T {
	case codec.TMsg:
		m := &Message{Header: h, CT: e.CT, B: e.B, Mn: e.Mn, TTL: e.TTL, Trunc: e.Trunc, Att: e.Att}
		if e.Re != nil {
			m.Re = e.Re.String()
		}
		if e.Th != nil {
			m.Th = e.Th.String()
		}
		return m
	case codec.TEdit:
		return &Edit{Header: h, Target: tgt, B: e.B}
	case codec.TDel:
		return &Delete{Header: h, Target: tgt}
	case codec.TReact:
		return &Reaction{Header: h, Target: tgt, K: e.K, Removed: e.Rm}
	case codec.TMark:
		return &Mark{Header: h, K: e.K, Upto: e.Upto}
	case codec.TMember:
		return &Member{Header: h, Op: e.Op, Who: e.Who, By: e.By, Role: e.Role}
	}
	return &Other{Header: h, T: e.T}
}
