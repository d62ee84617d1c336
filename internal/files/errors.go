package files

// Error is a refusal with its protocol code (PROTOCOL §14: the RPC error
// code, the err event's code, and the HTTP status of §15).
type Error struct {
	Code int
	Msg  string
}

// Error returns the message a client is told.
func (e *Error) Error() string { return e.Msg }

// Status returns the protocol code.
func (e *Error) Status() int { return e.Code }

// Refusals, by code. A file the caller may not read is ErrUnknownFile,
// exactly like a file that does not exist: existence is never revealed.
var (
	ErrBadHash       = &Error{400, "h must be 64 lowercase hex digits"}
	ErrBadSize       = &Error{400, "z must not be negative"}
	ErrBadName       = &Error{400, "n is longer than 255 bytes"}
	ErrBadCT         = &Error{400, "ct is longer than 128 bytes"}
	ErrPastEnd       = &Error{400, "chunk past the end"}
	ErrChunkSize     = &Error{400, "wrong chunk size"}
	ErrNotChunked    = &Error{400, "not a chunked upload"}
	ErrNotCommitted  = &Error{400, "file not committed"}
	ErrNotImage      = &Error{400, "not an image"}
	ErrUnknownFile   = &Error{404, "unknown file"}
	ErrIncomplete    = &Error{409, "chunks missing"}
	ErrHashMismatch  = &Error{409, "hash mismatch: upload again"}
	ErrSizeConflict  = &Error{409, "same h with another z"}
	ErrOffset        = &Error{409, "offset mismatch"}
	ErrCommitted     = &Error{409, "file already committed"}
	ErrTooLarge      = &Error{413, "file too large"}
	ErrOverQuota     = &Error{413, "quota exceeded"}
	ErrTooManyPixels = &Error{413, "image too large to decode"}
	ErrDiskFull      = &Error{507, "out of storage"}
)
