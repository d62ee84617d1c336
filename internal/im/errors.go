package im

import "errors"

// Error is a rejection of a client's command with its protocol code
// (PROTOCOL §5 err events and §9 RPC errors: HTTP-like 400, 403, 404, …).
// The adapter sends Code and Msg to the device; errors.Is matches the
// named errors below, also when a Detail was added.
type Error struct {
	Code int
	Msg  string
	base *Error
}

func (e *Error) Error() string { return e.Msg }

// Is reports whether target is e or the named error e was derived from.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && (t == e || t == e.base)
}

// Detail returns e with detail appended to its message as is
// (ErrUnknownUser.Detail(" bob") says "unknown user bob"); errors.Is(err,
// e) still holds.
func (e *Error) Detail(detail string) *Error { return e.WithMsg(e.Msg + detail) }

// WithMsg returns e with another message; errors.Is(err, e) still holds.
func (e *Error) WithMsg(msg string) *Error {
	base := e
	if e.base != nil {
		base = e.base
	}
	return &Error{Code: e.Code, Msg: msg, base: base}
}

func newError(code int, msg string) *Error { return &Error{Code: code, Msg: msg} }

// Port errors: what a store implementation returns (see the ports in
// ports.go). ErrClosed and ErrTooBig are client-visible too.
var (
	// ErrNotFound: no such record.
	ErrNotFound = errors.New("im: not found")
	// ErrExists: the record to create exists already.
	ErrExists = errors.New("im: already exists")
	// ErrStale: a write that must be newer than the stored record is not
	// (a presence whose pv is not greater: another node wrote first).
	ErrStale = errors.New("im: stale write")
	// ErrTrimmed: StreamReader.Stream was asked for a cursor below the
	// stream's floor (events after it were trimmed by age).
	ErrTrimmed = errors.New("im: stream trimmed past the cursor")
	// ErrGone: Deduped found the command, but its event no longer exists.
	ErrGone = errors.New("im: event is gone")
	// ErrClosed: the store is shutting down (503).
	ErrClosed = newError(503, "shutting down")
	// ErrTooBig: one append does not fit one commit of the backend (413).
	ErrTooBig = newError(413, "too large")
	// ErrNoSpace: the backend refuses writes while its disk is below the
	// free-space reserve (507).
	ErrNoSpace = newError(507, "insufficient storage")
)

// Rejections of client commands, by protocol code.
var (
	// 400: the command is malformed or breaks a rule of its own.
	ErrMalformed        = newError(400, "malformed payload")
	ErrSchema           = newError(400, "schema violation") // said as the field's own error
	ErrBadRequest       = newError(400, "malformed request")
	ErrBadArgs          = newError(400, "bad args")
	ErrUnknownOp        = newError(400, "unknown op")
	ErrBadConv          = newError(400, "bad conversation id")
	ErrBadRecipient     = newError(400, "bad recipient")
	ErrSelfMessage      = newError(400, "cannot message yourself")
	ErrSelf             = newError(400, "that is you")
	ErrBadUID           = newError(400, "bad uid")
	ErrBadUIDs          = newError(400, "bad uids")
	ErrBadGID           = newError(400, "bad gid")
	ErrBadID            = newError(400, "bad id")
	ErrBadCMID          = newError(400, "cmid must be 1 to 32 bytes")
	ErrMissingTo        = newError(400, "missing to")
	ErrMissingBody      = newError(400, "missing body")
	ErrMissingID        = newError(400, "missing id")
	ErrMissingUpto      = newError(400, "missing upto")
	ErrBadCT            = newError(400, "bad ct")
	ErrBadTTL           = newError(400, "bad ttl")
	ErrTooMany          = newError(400, "too many mentions or attachments")
	ErrBadMention       = newError(400, "bad mention")
	ErrBadReaction      = newError(400, "bad reaction")
	ErrNotMessage       = newError(400, "not a message")
	ErrBadMarkKind      = newError(400, "k must be read or dlv")
	ErrBadTypState      = newError(400, "s must be c or p")
	ErrBadEnc           = newError(400, "enc must be json or cbor")
	ErrBadMaxPkt        = newError(400, "bad maxPkt")
	ErrBadAtt           = newError(400, "att without fid")
	ErrFileNotCommitted = newError(400, "file not committed")
	ErrBadMaxBytes      = newError(400, "bad maxBytes")
	ErrBeforeAfter      = newError(400, "before and after are exclusive")
	ErrNameTooLong      = newError(400, "name too long")
	ErrBadAvatar        = newError(400, "avatar must be a file id")
	ErrNothingToDo      = newError(400, "nothing to update")
	ErrBadRole          = newError(400, "role must be owner, admin or member")
	ErrOwnRole          = newError(400, "cannot change your own role")
	ErrUseLeave         = newError(400, "use group.leave")
	ErrTooManyUIDs      = newError(400, "too many uids")
	ErrBadRetention     = newError(400, "retention must be 0 or 60 to 3153600000 seconds")
	ErrGroupOnly        = newError(400, "only a group conversation has its own retention")
	ErrNotMember        = newError(403, "not a member")
	ErrFileNotReadable  = newError(403, "file not readable")
	ErrNotAdmin         = newError(403, "not an admin")
	ErrNotAuthor        = newError(403, "not the author")
	ErrBlocked          = newError(403, "blocked")
	ErrNotContact       = newError(403, "not a contact")
	ErrCannotRemove     = newError(403, "cannot remove")
	ErrOwnerRole        = newError(403, "cannot change the owner's role")
	ErrOwnerHandsOver   = newError(403, "only the owner hands over ownership")
	ErrAdminRole        = newError(403, "only the owner changes an admin's role")
	ErrOwnsTooMany      = newError(403, "owns too many groups")
	ErrUnknownUser      = newError(404, "unknown user")
	ErrUnknownGroup     = newError(404, "unknown group")
	ErrUnknownMessage   = newError(404, "unknown message")
	ErrUnknownConv      = newError(404, "unknown conversation")
	ErrNoSuchMember     = newError(404, "not a member")
	ErrGroupFull        = newError(409, "group full")
	ErrGroupExists      = newError(409, "group exists")
	ErrOwnerMustLeave   = newError(409, "the owner must hand over ownership (group.role) first")
	ErrPayloadTooBig    = newError(413, "payload too large")
	ErrBodyTooBig       = newError(413, "body too large")
	ErrRateLimited      = newError(429, "rate limited")
	// ErrContentPolicy: the content policy (DLP) refused the text.
	ErrContentPolicy = newError(451, "refused by content policy")
	ErrInternal      = newError(500, "server fault")
	// ErrNotImplemented: a protocol feature this server does not build yet.
	ErrNotImplemented = newError(501, "not implemented")
	// ErrSearchUnavailable: the search index is starting or restarting.
	ErrSearchUnavailable = newError(503, "search unavailable, try again")
)

// Fault maps any error to the Error a client is told: named errors stay
// as they are, anything else is a server fault (500).
func Fault(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return ErrInternal
}
